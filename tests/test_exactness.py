"""Encode once, decode anywhere: the batched pass and the cached decoder agree bit for bit,
for PixelCNN++, PixelSNAIL and multi-resolution PixelCNN++ (every test runs on each)."""

import numpy as np
import pytest
import torch

from arcompress import codec, container, zoo
from arcompress.head import (SCALE_OFFSET_ZERO, SCALE_OFFSETS, UNIFORM_TILE, ExactHead, choose_scale_offsets,
                             levels_used, tile_bits)
from arcompress.media import from_array
from arcompress.plan import TilePlan

from conftest import IMAGE_MODEL_FIXTURES, LOUD_MODEL_FIXTURES, WORST_CASES, natural_image

models = pytest.mark.parametrize("which", IMAGE_MODEL_FIXTURES)


def batched_params(model, tiles, inside):
    return model.net.forward(model.ops, model.ops.embed(tiles, inside)).to(torch.int64)


def cached_params(model, tiles, inside):
    """Teacher-forced cached decoder: params (B, P, h, w) computed pixel by pixel."""
    b, c, h, w = tiles.shape
    dec = model.net.CachedDecoder(model.ops, b, h, w)
    out = torch.zeros(b, model.ops.weights["out"][0].shape[0], h, w, dtype=torch.int64)
    emb = model.ops.embed(tiles, inside)
    for i in range(h):
        dec.start_row(i)
        for j in range(w):
            out[:, :, i, j] = dec.step(j).to(torch.int64)
            dec.commit(j, emb[:, :, i, j])
    return out


def head_tables(model, params, pixels):
    """Integer tables (N, C, 256) for params (N, P) and the pixels (N, C) they code."""
    head = ExactHead(model.ops.tables, model.config.channels, model.config.mixtures)
    head.start(params)
    out = []
    for c in range(model.config.channels):
        out.append(head.freqs(c))
        head.observe(c, pixels[:, c])
    return torch.stack(out, 1)


@pytest.mark.parametrize("kind", sorted(WORST_CASES))
@pytest.mark.parametrize("which", IMAGE_MODEL_FIXTURES + LOUD_MODEL_FIXTURES)
@pytest.mark.parametrize("channels", [1, 3])
def test_batched_equals_incremental(kind, which, channels, request):
    model = request.getfixturevalue(which)[channels]
    img = torch.from_numpy(WORST_CASES[kind](11, 13, channels)).permute(2, 0, 1)
    plan = TilePlan(11, 13, 8, 64)  # ragged tiles: padding on the right and bottom
    tiles, inside = plan.split(img)
    full = batched_params(model, tiles, inside)
    step = cached_params(model, tiles, inside)
    assert torch.equal(full, step), f"{int((full != step).sum())} parameters differ"
    n = full.shape[0] * 8 * 8
    t1 = head_tables(model, full.permute(0, 2, 3, 1).reshape(n, -1), tiles.permute(0, 2, 3, 1).reshape(n, -1))
    assert bool((t1.sum(-1) == 1 << 24).all()) and int(t1.min()) >= 1


@pytest.mark.parametrize("which", LOUD_MODEL_FIXTURES)
def test_loud_model_really_saturates(which, request):
    """The worst-case model must actually reach the activation clamps and table ends."""
    model = request.getfixturevalue(which)[3]
    tiles = torch.from_numpy(natural_image(8, 8, 3)).permute(2, 0, 1)[None]
    params = batched_params(model, tiles, torch.ones(1, 1, 8, 8))
    from arcompress import fixedpoint as fp
    assert int(params.abs().max()) == fp.ACT_LIMIT


@models
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (7, 9), (13, 5)])
def test_odd_shapes_round_trip(which, shape, request):
    tiny_models = request.getfixturevalue(which)
    for c in (1, 3):
        a = natural_image(*shape, c)
        data, _ = codec.encode_image(from_array(a), tiny_models.__getitem__, tile=4, group=3)
        back = codec.decode_image(data, lambda n, d: tiny_models[c])
        assert np.array_equal(back.pixels, from_array(a).pixels)


@models
def test_lock_step_composition_does_not_change_tables(which, request):
    """A tile's parameters are the same alone, with other tiles, and in another order."""
    model = request.getfixturevalue(which)[3]
    img = torch.from_numpy(natural_image(16, 24, 3, seed=3)).permute(2, 0, 1)
    tiles, inside = TilePlan(16, 24, 8, 64).split(img)
    together = cached_params(model, tiles, inside)
    alone = torch.cat([cached_params(model, tiles[k:k + 1], inside[k:k + 1]) for k in range(len(tiles))])
    order = torch.tensor([4, 0, 5, 2])
    subset = cached_params(model, tiles[order], inside[order])
    assert torch.equal(together, alone)
    assert torch.equal(together[order], subset)


@models
def test_thread_count_does_not_change_bytes(which, request):
    tiny_models = request.getfixturevalue(which)
    a = natural_image(24, 20, 3, seed=4)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one, _ = codec.encode_image(from_array(a), tiny_models.__getitem__, tile=16)
        torch.set_num_threads(2)
        two, _ = codec.encode_image(from_array(a), tiny_models.__getitem__, tile=16)
    finally:
        torch.set_num_threads(n)
    assert one == two
    torch.set_num_threads(2)
    try:
        back = codec.decode_image(one, lambda name, d: tiny_models[3])
    finally:
        torch.set_num_threads(n)
    assert np.array_equal(back.pixels, a)


@models
@pytest.mark.parametrize("tile,group", [(4, 1), (8, 2), (32, 256)])
def test_tiling_and_grouping_round_trip(which, tile, group, request):
    tiny_models = request.getfixturevalue(which)
    a = natural_image(12, 10, 3, seed=6)
    data, stats = codec.encode_image(from_array(a), tiny_models.__getitem__, tile=tile, group=group)
    assert np.array_equal(codec.decode_image(data, lambda n, d: tiny_models[3]).pixels, a)
    # bits written vs the exact model's own NLL: header plus at most a few bytes per segment
    assert stats.payload_bytes * 8 >= stats.nll_bits


@models
def test_parallel_segment_decoding_matches_serial(which, request):
    tiny_models = request.getfixturevalue(which)
    a = natural_image(40, 36, 3, seed=8)
    data, _ = codec.encode_image(from_array(a), tiny_models.__getitem__, tile=8, group=6)
    finder = lambda n, d: tiny_models[3]  # noqa: E731
    serial = codec.decode_image(data, finder, workers=1)
    parallel = codec.decode_image(data, finder, workers=2)
    assert np.array_equal(serial.pixels, a) and np.array_equal(parallel.pixels, a)


def test_default_group_gives_two_segments_for_mid_size_images():
    assert codec.default_group(64) == 32 and codec.default_group(10) == 16
    assert codec.default_group(5000) == codec.DEFAULT_GROUP


@models
@pytest.mark.parametrize("adapt", [False, True])
def test_exact_model_stays_close_to_the_float_model(which, adapt, request):
    """The conversion's cost on a natural image: exact NLL within 2 % of the float NLL, with the
    model's own scales and with the scale offsets the encoder picks (the float model's choice)."""
    model = request.getfixturevalue(which)[3]
    img = natural_image(16, 16, 3, seed=4)
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    inside = torch.ones(1, 1, 16, 16)
    with torch.no_grad():
        params = model.float_model()(x)
        offsets = choose_scale_offsets(params, x, inside) if adapt else torch.full((1, 3), SCALE_OFFSET_ZERO)
        float_bits = float(tile_bits(params, x, inside, offsets)[0])
    _, stats = codec.encode_image(from_array(img), lambda c: model, tile=16, adapt=adapt, level_sets=False,
                                  uniform_tiles=False, calibrate=False)  # nor does the float NLL
    assert abs(stats.nll_bits / float_bits - 1) < 0.02, (stats.nll_bits, float_bits)


@pytest.mark.parametrize("which", IMAGE_MODEL_FIXTURES + LOUD_MODEL_FIXTURES)
def test_any_scale_offsets_round_trip(which, request, monkeypatch):
    """Whatever offsets the encoder writes (the extremes included), the decoder reads and applies
    them: worst-case images round-trip with random per-tile offsets."""
    models = request.getfixturevalue(which)
    gen = torch.Generator().manual_seed(11)

    def random_offsets(params, tiles, inside):
        idx = torch.randint(0, SCALE_OFFSETS, tiles.shape[:2], generator=gen)
        idx[0, 0], idx[-1, -1] = 0, SCALE_OFFSETS - 1
        return idx

    monkeypatch.setattr(codec, "choose_scale_offsets", random_offsets)

    def random_uniform(params, tiles, inside, offsets):  # format 12: some channels uniform
        return torch.where(torch.rand(offsets.shape, generator=gen) < 0.3, UNIFORM_TILE, offsets)

    monkeypatch.setattr(codec, "choose_uniform_tiles", random_uniform)
    for kind in ("noise", "saturated", "flat"):
        a = WORST_CASES[kind](13, 11, 3)
        data, _ = codec.encode_image(from_array(a), models.__getitem__, tile=4, group=5)
        assert np.array_equal(codec.decode_image(data, lambda n, d: models[3]).pixels, a), kind


def test_scale_adaptation_pays_where_the_model_is_overconfident(monkeypatch):
    """``pixelcnn-rgb``, trained on photos only, is overconfident on noise: the encoder picks
    wider scales, the file shrinks by more than 10 %, and it decodes exactly (without the
    uniform tiles of format 12, which would code this noise uniformly either way)."""
    from arcompress import zoo
    monkeypatch.setattr(codec, "choose_uniform_tiles", lambda params, tiles, inside, offsets: offsets)
    model = zoo.resolve("pixelcnn-rgb")
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    fixed, _ = codec.encode_image(from_array(noise), lambda c: model, adapt=False, calibrate=False)
    adapted, _ = codec.encode_image(from_array(noise), lambda c: model, calibrate=False)
    assert len(adapted) < 0.9 * len(fixed), (len(adapted), len(fixed))
    assert np.array_equal(codec.decode_image(adapted).pixels, noise)


def test_the_encoder_picks_the_candidate_with_the_fewest_bits(tiny_models, snail_models, multires_models):
    """Given several models (``--model best``), the encoder keeps the one whose estimated bits are
    fewest; the estimate is within 2 % of the exact NLL; the file decodes with that model."""
    img = natural_image(16, 16, 3, seed=9)
    candidates = [tiny_models[3], snail_models[3], multires_models[3]]
    plan = TilePlan(16, 16, 8, 4)
    tiles, inside = plan.split(torch.from_numpy(img).permute(2, 0, 1))
    estimates, exact = [], []
    for m in candidates:
        params = codec.exact_params(m, tiles, inside, torch.device("cpu"))
        estimates.append(codec.estimated_bits(params, tiles, inside, True))
        exact.append(codec.encode_image(from_array(img), lambda c: m, tile=8, group=4, level_sets=False,
                                        uniform_tiles=False)[1].nll_bits)
    assert max(abs(e / x - 1) for e, x in zip(estimates, exact)) < 0.02, (estimates, exact)
    data, stats = codec.encode_image(from_array(img), lambda c: candidates, tile=8, group=4, level_sets=False,
                                     uniform_tiles=False)
    best = candidates[int(np.argmin(estimates))]
    assert stats.models == [best.name] and stats.nll_bits == exact[int(np.argmin(estimates))]
    by_digest = {m.digest[:8]: m for m in candidates}
    assert np.array_equal(codec.decode_image(data, lambda n, d: by_digest[bytes(d)]).pixels, img)
    with pytest.raises(ValueError, match="channel"):
        codec.encode_image(from_array(img), lambda c: [tiny_models[1]])


@pytest.mark.parametrize("which", IMAGE_MODEL_FIXTURES + LOUD_MODEL_FIXTURES)
def test_level_sets_round_trip(which, request, monkeypatch):
    """Whatever level sets the header carries (here every channel's, one-level sets included),
    the decoder restricts its tables exactly as the encoder did: worst-case and sparse images
    round-trip, with serial and parallel segment decoding."""
    models = request.getfixturevalue(which)
    def every_channels_set(model, tiles, inside, params, offsets):
        return [levels_used(tiles[:, c][inside[:, 0].bool()]) for c in range(tiles.shape[1])]

    monkeypatch.setattr(codec, "choose_level_sets", every_channels_set)
    sparse = natural_image(13, 11, 3, seed=12) // 16 * 16
    for name, a in [("sparse", sparse), *((k, WORST_CASES[k](13, 11, 3)) for k in ("noise", "saturated", "flat"))]:
        data, _ = codec.encode_image(from_array(a), models.__getitem__, tile=4, group=5)
        levels = container.unpack(data).planes[0].levels
        assert levels == [levels_used(torch.from_numpy(a[..., c])) for c in range(3)], name
        for workers in (1, 2):
            assert np.array_equal(codec.decode_image(data, lambda n, d: models[3], workers=workers).pixels, a), name


def test_level_savings_are_the_exact_nll_difference(tiny_models, monkeypatch):
    """Measured on every pixel, what the encoder expects level sets to save is exactly what they
    save: the exact NLL without them minus the NLL with them (scale offsets and tiles included)."""
    img = natural_image(21, 19, 3, seed=14) // 8 * 8
    model = tiny_models[3]
    seen = {}

    def every_channels_set(model, tiles, inside, params, offsets):
        rows = torch.nonzero(inside.reshape(-1)).flatten()
        sym = tiles.permute(0, 2, 3, 1).reshape(-1, 3)
        used = [levels_used(sym[rows, c]) for c in range(3)]
        shifts = None if offsets is None else codec.scale_offset(offsets)
        seen["saved"] = float(codec._level_savings(model, sym, params, rows, tiles.shape[2:], shifts, used).sum())
        return used

    plain = codec.encode_image(from_array(img), lambda c: model, tile=8, group=3, level_sets=False,
                               uniform_tiles=False)[1].nll_bits
    monkeypatch.setattr(codec, "choose_level_sets", every_channels_set)
    restricted = codec.encode_image(from_array(img), lambda c: model, tile=8, group=3,
                                    uniform_tiles=False)[1].nll_bits
    assert seen["saved"] > 0
    assert seen["saved"] == pytest.approx(plain - restricted, rel=1e-9, abs=1e-6)


def test_level_set_choice_measures_more_pixels_only_when_too_close_to_call(monkeypatch):
    """The choice starts from a sample; a clear saving is decided there, while a saving it cannot
    tell from the field's cost makes it measure 4x as many pixels, up to every pixel, where it
    takes the choice that every pixel's measurement gives."""
    from arcompress import zoo
    model = zoo.resolve(zoo.DEFAULTS[3])
    img = natural_image(48, 40, 3, seed=13) // 4 * 4
    tiles, inside = TilePlan(48, 40, 16, 4).split(torch.from_numpy(img).permute(2, 0, 1))
    params = codec.exact_params(model, tiles, inside, torch.device("cpu"))
    offsets = codec._tile_offsets(params, tiles, inside, True)
    sizes = []
    measure = codec._level_savings
    monkeypatch.setattr(codec, "_level_savings", lambda *a: (sizes.append(len(a[3])), measure(*a))[1])

    def choose(sample):
        sizes.clear()
        return codec.choose_level_sets(model, tiles, inside, params, offsets, sample=sample)

    every = choose(1 << 30)
    assert sizes == [48 * 40] and all(m is not None for m in every)
    assert choose(64) == every and sizes == [64]  # multiples of 4: a clear gain, seen on 64 pixels
    monkeypatch.setattr(codec, "LEVEL_SAMPLE_Z", float("inf"))  # nothing is clear any more
    monkeypatch.setattr(codec, "LEVEL_SAMPLE_TOLERANCE_BITS", 0)
    assert choose(64) == every and sizes == [64, 256, 1024, 48 * 40]
    monkeypatch.setattr(codec, "LEVEL_SAMPLE_TOLERANCE_BITS", float("inf"))  # any wrong call is cheap
    assert choose(64) == every and sizes == [64]


def test_level_sets_are_written_where_they_pay():
    """With the shipped RGB model: an image whose levels are all multiples of 4 gets level sets
    and a much smaller file; one that uses every level in every channel gets none."""
    from arcompress import zoo
    model = zoo.resolve(zoo.DEFAULTS[3])
    rng = np.random.default_rng(3)
    sparse = natural_image(32, 32, 3, seed=13) // 4 * 4
    full = natural_image(32, 32, 3, seed=13)
    full.reshape(-1, 3)[:256] = np.arange(256, dtype=np.uint8)[:, None]
    rng.shuffle(full.reshape(-1, 3)[:256])
    restricted, _ = codec.encode_image(from_array(sparse), lambda c: model)
    plain, _ = codec.encode_image(from_array(sparse), lambda c: model, level_sets=False)
    assert all(m is not None for m in container.unpack(restricted).planes[0].levels)
    assert len(restricted) < 0.85 * len(plain), (len(restricted), len(plain))
    assert np.array_equal(codec.decode_image(restricted).pixels, sparse)
    data, _ = codec.encode_image(from_array(full), lambda c: model)
    assert container.unpack(data).planes[0].levels == []


@pytest.mark.parametrize("shape,high", [((40, 50, 3), 256), ((40, 50, 3), 255), ((24, 40), 100)])
def test_noise_costs_no_more_than_its_levels(monkeypatch, shape, high):
    """Format 12: where the default model would code a tile's channels in more bits than uniform
    tables over the levels used, they are coded uniformly, so white noise takes about log2 of
    its level count a sub-pixel plus the header; format 11 wrote far more.  Round trips exact;
    a natural image gets no uniform tile."""
    noise = np.random.default_rng(5).integers(0, high, shape).astype(np.uint8)
    data, stats = codec.encode_image(from_array(noise))
    assert np.array_equal(codec.decode_image(data).pixels.reshape(noise.shape), noise) and stats.uniform_channels
    ideal = noise.size * np.log2(high) / 8
    assert len(data) <= ideal + 64, (len(data), ideal)
    monkeypatch.setattr(container, "FORMAT_VERSION", 11)
    data11, _ = codec.encode_image(from_array(noise))
    assert len(data11) > 1.05 * ideal
    monkeypatch.undo()
    img = natural_image(32, 32, 3, seed=4)
    plan = TilePlan(32, 32, 32, 1)
    tiles, inside = plan.split(torch.from_numpy(img).permute(2, 0, 1))
    model = zoo.resolve(zoo.DEFAULTS[3])
    params = codec.exact_params(model, tiles, inside, torch.device("cpu"))
    offsets = codec._tile_offsets(params, tiles, inside, True)
    assert torch.equal(codec.choose_uniform_tiles(params, tiles, inside, offsets), offsets)
