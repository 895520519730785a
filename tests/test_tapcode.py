"""Rice-coded linear predictors (format version 7; each stream's order from version 10): exact
round trips, clear errors, the encoder's precision and order choices."""

import numpy as np
import pytest
import torch

from arcompress.audio_head import choose_lpc, chunk_lpc
from arcompress.container import FormatError
from arcompress.tapcode import pack_taps, predictor_bits, rice_bits, unpack_taps

from conftest import tone


def _random_predictors(rng, streams=7, order=6, cross=3):
    taps = torch.from_numpy(rng.integers(-300, 301, (streams, order)))
    taps[0] = torch.tensor([32767, -32767, 0, 1, -1, 2])[:order]  # the extremes, zero, +-1
    taps[1] = 0
    xt = torch.from_numpy(rng.integers(-40, 41, (streams, cross)))
    has_ref = torch.tensor([i % 3 > 0 for i in range(streams)])
    xt[~has_ref] = 0
    shift = torch.from_numpy(rng.integers(0, 16, streams))
    return taps, xt, shift, has_ref


@pytest.mark.parametrize("cross", [0, 3])
def test_coded_predictors_round_trip_exactly(cross):
    rng = np.random.default_rng(0)
    taps, xt, shift, has_ref = _random_predictors(rng, cross=cross)
    data = pack_taps(taps, xt, shift, has_ref)
    back = unpack_taps(data + b"\xff\x00 symbols follow", has_ref, taps.shape[1], cross)
    assert torch.equal(back[0], taps) and torch.equal(back[1], xt) and torch.equal(back[2], shift)
    assert torch.equal(back[3], torch.full((len(taps),), taps.shape[1])) and back[4] == len(data)
    bits = int(rice_bits(taps)[0].sum()) + 4 * len(taps)
    if cross:
        bits += int(rice_bits(xt)[0][has_ref].sum())
    assert len(data) == -(-bits // 8)  # the encoder's cost model counts what is written


def test_truncated_or_corrupt_predictors_raise_format_errors():
    rng = np.random.default_rng(1)
    taps, xt, shift, has_ref = _random_predictors(rng)
    data = pack_taps(taps, xt, shift, has_ref)
    for n in range(len(data)):
        with pytest.raises(FormatError):
            unpack_taps(data[:n], has_ref, taps.shape[1], xt.shape[1])
    with pytest.raises(FormatError, match="predictor tap"):  # k = 0 and a unary run past 32767
        unpack_taps(b"\x00" + b"\xff" * 5000, torch.tensor([False]), 4, 0)


def test_encoder_chooses_coarser_taps_that_cost_fewer_bits():
    """On a noisy resonance the chosen taps are coarser than the finest that fits int16, take
    fewer bits, and predict about as well."""
    x = torch.from_numpy(tone(2048, 1, seed=4)[:, 0].astype(np.int64)).view(1, -1)
    lengths = torch.tensor([2048])
    fine = chunk_lpc(x, lengths, 16, coded=False)
    coded = chunk_lpc(x, lengths, 16)
    assert int(coded.shift[0]) < int(fine.shift[0])
    assert int(rice_bits(coded.taps)[0][0]) < int(rice_bits(fine.taps)[0][0]) < 16 * 16
    err = {k: (x - (p.exact_prediction(x) >> 8)).double().pow(2).mean() for k, p in (("fine", fine), ("coded", coded))}
    assert err["coded"] < 1.05 * err["fine"]


def _periodic(frames: int, period: int, seed: int) -> np.ndarray:
    """A random waveform repeated every ``period`` samples, plus a little noise (int64)."""
    rng = np.random.default_rng(seed)
    cycle = rng.normal(0, 3000, period)
    return np.round(np.resize(cycle, frames) + rng.normal(0, 4, frames)).astype(np.int64)


def test_streams_of_different_orders_round_trip_exactly():
    """Format 10 writes each stream's order and only that many taps: the taps, cross taps and
    orders come back, and predictor_bits counts what is written."""
    rng = np.random.default_rng(3)
    taps, xt, shift, has_ref = _random_predictors(rng, streams=7, order=6, cross=3)
    orders = torch.tensor([2, 4, 2, 4, 2, 4, 2])
    taps = torch.where(torch.arange(6) < orders.view(-1, 1), taps, 0)
    with pytest.raises(ValueError, match="past a stream's order"):
        pack_taps(taps, xt, shift, has_ref, torch.full((7,), 2))
    with pytest.raises(ValueError, match="among"):
        pack_taps(taps, xt, shift, has_ref, torch.full((7,), 6))
    data = pack_taps(taps, xt, shift, has_ref, orders)
    back = unpack_taps(data + b"\xff\x00", has_ref, None, 3)
    assert torch.equal(back[0], taps[:, :4]) and torch.equal(back[1], xt) and torch.equal(back[2], shift)
    assert torch.equal(back[3], orders) and back[4] == len(data)
    assert len(data) == -(-int(predictor_bits(taps, xt, has_ref, orders).sum()) // 8)
    assert int(predictor_bits(taps, xt, has_ref, orders).sum()) < int(predictor_bits(taps, xt, has_ref).sum())
    corrupt = bytes([0b11100000]) + data[1:]  # order code 7 is not defined
    with pytest.raises(FormatError, match="predictor order"):
        unpack_taps(corrupt, has_ref, None, 3)


def test_encoder_chooses_a_long_predictor_for_a_long_period_only():
    """A waveform that repeats every 61 samples gets a predictor of 64 taps or more (it reaches
    one period back) and is predicted far better than by 16 taps; white noise gets a short one
    (its taps would cost bits and predict nothing)."""
    n = 4096
    periodic = torch.from_numpy(_periodic(n, 61, 0)).view(1, n)
    noise = torch.from_numpy(np.random.default_rng(1).integers(-3000, 3000, n)).view(1, n)
    x = torch.cat([periodic, noise])
    lengths = torch.full((2,), n)
    chosen = choose_lpc(x, lengths)
    assert int(chosen.orders[0]) >= 64 and int(chosen.orders[1]) <= 8
    assert chosen.order == int(chosen.orders.max()) and not chosen.taps[1, int(chosen.orders[1]):].any()
    short = chunk_lpc(x[:1], lengths[:1], 16)

    def power(p, s):  # after the first period, which nothing predicts
        return float((s - (p.exact_prediction(s) >> 8))[:, 128:].double().pow(2).mean())

    assert power(chosen.rows(torch.tensor([0])), x[:1]) < power(short, x[:1]) / 100
