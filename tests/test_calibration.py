"""Calibration of a model's output parameters (format 13; Rice-coded from 14): exact integer
arithmetic, any values round-trip, the encoder's fit finds a systematic error, rounds it to the
precision that pays and keeps it only where it should, and the header field is read back or
refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arcompress import calibration, codec, container, zoo
from arcompress import fixedpoint as fp
from arcompress.calibration import GAIN_LIMIT, OFFSET_LIMIT, Calibration
from arcompress.head import num_params, pixel_nll_bits
from arcompress.media import from_array
from arcompress.plan import TilePlan

from conftest import IMAGE_MODEL_FIXTURES, LOUD_MODEL_FIXTURES, WORST_CASES, natural_image


def random_calibration(size: int, seed: int) -> Calibration:
    """Random gains and offsets over their whole ranges, the extremes included."""
    gen = torch.Generator().manual_seed(seed)
    gains = torch.randint(-GAIN_LIMIT, GAIN_LIMIT + 1, (size,), generator=gen)
    offsets = torch.randint(-OFFSET_LIMIT, OFFSET_LIMIT + 1, (size,), generator=gen)
    gains[0], gains[-1], offsets[0], offsets[-1] = GAIN_LIMIT, -GAIN_LIMIT, -OFFSET_LIMIT, OFFSET_LIMIT
    small = torch.rand(size, generator=gen) < 0.5  # and many small ones, as the encoder writes
    gains = torch.where(small, gains // 64, gains)
    offsets = torch.where(small, offsets // 256, offsets)
    return Calibration(tuple(gains.tolist()), tuple(offsets.tolist()))


def test_apply_is_the_integer_formula_on_any_input_type():
    cal = random_calibration(7, seed=1)
    gen = torch.Generator().manual_seed(2)
    params = torch.randint(-fp.ACT_LIMIT, fp.ACT_LIMIT + 1, (500, 7), generator=gen)
    params[0] = fp.ACT_LIMIT
    params[1] = -fp.ACT_LIMIT
    got = calibration.apply(params, cal)
    expected = [[max(-fp.ACT_LIMIT, min(fp.ACT_LIMIT, (p * (4096 + g) + 2048) // 4096 + o))
                 for p, g, o in zip(row, cal.gains, cal.offsets)] for row in params.tolist()]
    assert got.tolist() == expected
    # the decoder's float64 parameters and the encoder's int64 ones give the same integers
    assert torch.equal(calibration.apply(params.to(torch.float64), cal), got)
    # along another dimension (the encoder's (N, P, h, w))
    four = params.view(5, 100, 7).permute(0, 2, 1).unsqueeze(-1)
    assert torch.equal(calibration.apply(four, cal, dim=1), got.view(5, 100, 7).permute(0, 2, 1).unsqueeze(-1))
    assert calibration.apply(params, None) is params
    zero = Calibration((0,) * 7, (0,) * 7)
    assert torch.equal(calibration.apply(params, zero), params)


def test_calibration_values_are_range_checked():
    with pytest.raises(ValueError):
        Calibration((GAIN_LIMIT + 1,), (0,))
    with pytest.raises(ValueError):
        Calibration((0,), (-OFFSET_LIMIT - 1,))
    with pytest.raises(ValueError):
        Calibration((0, 0), (0,))


@pytest.mark.parametrize("which", IMAGE_MODEL_FIXTURES + LOUD_MODEL_FIXTURES)
def test_any_calibration_round_trips(which, request, monkeypatch):
    """Whatever calibration the encoder writes (extreme gains and offsets included), the decoder
    applies the same one: worst-case images round-trip, grey and RGB, and the calibrated file's
    exact NLL is the one its tables give."""
    models = request.getfixturevalue(which)
    seeds = iter(range(100))
    monkeypatch.setattr(calibration, "fit", lambda params, tiles, inside, shifts=None: random_calibration(params.shape[1], next(seeds)))
    for channels in (1, 3):
        for kind in ("natural", "noise", "saturated"):
            a = WORST_CASES[kind](11, 13, channels)
            # no uniform tiles: they would take over every tile a wild calibration spoils
            data, stats = codec.encode_image(from_array(a if channels == 3 else a[..., 0]), models.__getitem__,
                                             tile=4, group=5, uniform_tiles=False)
            assert stats.calibrated_planes == 1
            assert container.unpack(data).planes[0].calibration is not None
            back = codec.decode_image(data, lambda n, d: models[channels])
            assert np.array_equal(back.pixels.reshape(a.shape), a), (kind, channels)


def test_each_plane_group_has_its_own_calibration(tiny_models, monkeypatch):
    """RGBA: the RGB group and the alpha plane carry their own fields (one may have none)."""
    calls = []

    def one_of_two(params, tiles, inside, shifts=None):
        calls.append(params.shape[1])
        return random_calibration(params.shape[1], 9) if len(calls) == 1 else None

    monkeypatch.setattr(calibration, "fit", one_of_two)
    a = natural_image(9, 10, 4, seed=2)
    data, stats = codec.encode_image(from_array(a), tiny_models.__getitem__, tile=4)
    planes = container.unpack(data).planes
    assert [p.calibration is not None for p in planes] == [True, False]
    assert calls == [num_params(3, 3), num_params(1, 3)]
    assert np.array_equal(codec.decode_image(data, lambda n, d: tiny_models[3 if n.endswith("rgb") else 1]).pixels, a)


def test_fit_recovers_a_systematic_error():
    """Parameters of a trained model pushed off by a constant (the means too high, the scales too
    wide) cost bits; the fit takes most of them back, and the calibration is kept because it
    pays for its field."""
    model = zoo.resolve("pixelcnn-rgb")
    img = torch.from_numpy(natural_image(64, 64, 3, seed=5)).permute(2, 0, 1)
    tiles, inside = TilePlan(64, 64, 16, 16).split(img)
    params = codec.exact_params(model, tiles, inside, torch.device("cpu"))
    k = model.config.mixtures
    bad = params.clone()
    bad[:, k:4 * k] += 100  # means: about 12 levels too high
    bad[:, 4 * k:7 * k] += 700  # log-scales: about twice as wide

    def bits(p):
        return float(pixel_nll_bits(p.to(torch.float32) / fp.ONE, tiles).sum())

    cal = calibration.fit(bad, tiles, inside)
    assert cal is not None
    calibrated = calibration.apply(bad, cal, dim=1)
    fixed = bits(calibrated)
    assert fixed < bits(params) + 0.3 * (bits(bad) - bits(params)), (bits(params), bits(bad), fixed)
    # the pushes are undone on average (by offsets, gains or both)
    drift = (calibrated - params).to(torch.float64)
    assert abs(float(drift[:, k:4 * k].mean())) < 50 and abs(float(drift[:, 4 * k:7 * k].mean())) < 350


def test_fit_is_not_kept_where_it_cannot_pay(tiny_models):
    """On a 6x6 image a hundred numbers in the header cost more than any calibration saves."""
    model = tiny_models[3]
    img = torch.from_numpy(natural_image(6, 6, 3, seed=6)).permute(2, 0, 1)
    tiles, inside = TilePlan(6, 6, 8, 1).split(img)
    params = codec.exact_params(model, tiles, inside, torch.device("cpu"))
    assert calibration.fit(params, tiles, inside) is None


def test_header_field_round_trips_and_is_refused_when_corrupt(tiny_models, monkeypatch):
    cal = random_calibration(num_params(3, 3), 4)
    monkeypatch.setattr(calibration, "fit", lambda params, tiles, inside, shifts=None: cal)
    a = natural_image(8, 8, 3, seed=7)
    data, _ = codec.encode_image(from_array(a), tiny_models.__getitem__, tile=8)
    header = container.unpack(data)
    assert header.planes[0].calibration == (cal.gains, cal.offsets)
    assert data[4] == container.FORMAT_VERSION
    # a field of the wrong size for the model: a clear format error, no pixels
    header.planes[0].calibration = (cal.gains[:-1], cal.offsets[:-1])
    with pytest.raises(container.FormatError, match="calibration"):
        codec.decode_image(container.pack(header), lambda n, d: tiny_models[3])
    # a value beyond the ranges calibration.py allows
    header.planes[0].calibration = ((GAIN_LIMIT + 1,) + cal.gains[1:], cal.offsets)
    with pytest.raises(container.FormatError, match="calibration"):
        codec.decode_image(container.pack(header), lambda n, d: tiny_models[3])


def test_older_versions_refuse_the_calibration_flag(tiny_models, monkeypatch):
    """Bit 7 of the mode byte means a calibration only from version 13: in a version-12 header it
    is an unknown flag."""
    monkeypatch.setattr(calibration, "fit", lambda params, tiles, inside, shifts=None: random_calibration(params.shape[1], 5))
    data, _ = codec.encode_image(from_array(natural_image(8, 8, 3, seed=8)), tiny_models.__getitem__, tile=8)
    old = bytearray(data)
    old[4] = container.UNIFORM_TILES_VERSION
    with pytest.raises(container.FormatError, match="mode"):
        container.unpack(bytes(old))


def test_uncalibrated_files_are_format_12_bytes(tiny_models, monkeypatch):
    """Without a calibration a file is format 12's, but for the version byte."""
    a = natural_image(10, 12, 3, seed=9)
    version = container.FORMAT_VERSION
    new, _ = codec.encode_image(from_array(a), tiny_models.__getitem__, tile=8)
    assert container.unpack(new).planes[0].calibration is None
    monkeypatch.setattr(container, "FORMAT_VERSION", container.UNIFORM_TILES_VERSION)
    old, _ = codec.encode_image(from_array(a), tiny_models.__getitem__, tile=8)
    assert old[4] == 12 and new[4] == version and len(old) == len(new)
    assert container.unpack(old).planes == container.unpack(new).planes


def test_version_13_calibrations_are_still_read(tiny_models, monkeypatch):
    """A version-13 file (zigzag varints) carries the same calibration as a version-14 one (Rice
    codes, here with shifts) and decodes; the coded field is the smaller."""
    cal = Calibration(tuple(16 * (i % 21 - 10) for i in range(num_params(3, 3))),
                      tuple(4 * (i % 41 - 20) for i in range(num_params(3, 3))))
    monkeypatch.setattr(calibration, "fit", lambda params, tiles, inside, shifts=None: cal)
    a = natural_image(9, 11, 3, seed=12)
    new, _ = codec.encode_image(from_array(a), tiny_models.__getitem__, tile=8)
    monkeypatch.setattr(container, "FORMAT_VERSION", container.CALIBRATION_VERSION)
    old, _ = codec.encode_image(from_array(a), tiny_models.__getitem__, tile=8)
    assert (old[4], new[4]) == (13, 14) and len(old) > len(new)
    for data in (old, new):
        assert container.unpack(data).planes[0].calibration == (cal.gains, cal.offsets)
        assert np.array_equal(codec.decode_image(data, lambda n, d: tiny_models[3]).pixels, a)


def test_precision_is_the_cheapest_rounding():
    """The fit's rounding: where only the header counts, a much smaller field than the finest
    rounding's, that no other precision of the gains alone or of the offsets alone makes smaller;
    where any change from the fitted values is dear, the finest (the fitted values rounded)."""
    gains = torch.tensor([37.4, -300.2, 5.0, 1000.0])
    offsets = torch.tensor([-3000.6, 12.2, 0.4, 700.0])
    coarse = calibration._precision(gains, offsets, lambda cal: 8 * calibration.header_bytes(cal))
    grid = {(a, b): calibration._rounded(gains, offsets, a, b)
            for a in range(calibration.PRECISION_SHIFTS[0] + 1) for b in range(calibration.PRECISION_SHIFTS[1] + 1)}
    a, b = next(k for k, cal in grid.items() if cal == coarse)
    smallest = calibration.header_bytes(coarse)
    assert all(calibration.header_bytes(cal) >= smallest for (i, j), cal in grid.items() if i == a or j == b)

    def dear(cal):
        g, o = torch.tensor(cal.gains, dtype=torch.float32), torch.tensor(cal.offsets, dtype=torch.float32)
        return 1e6 * float((g - gains).abs().sum() + (o - offsets).abs().sum()) + 8 * calibration.header_bytes(cal)
    fine = calibration._precision(gains, offsets, dear)
    assert fine.gains == (37, -300, 5, 1000) and fine.offsets == (-3001, 12, 0, 700)
    assert calibration.header_bytes(fine) >= smallest + 3
