"""The integer head: valid tables, posterior mixture weights, agreement with the float NLL."""

import math

import torch

from arcompress.head import (SCALE_OFFSET_ZERO, SCALE_OFFSETS, ExactHead, exact_bits, freqs_from_masses,
                             nll_bits, scale_offset, tile_bits)

from conftest import natural_image


def test_freqs_are_valid_for_extreme_masses():
    mass = torch.zeros(5, 256, dtype=torch.int64)
    mass[0, 7] = 1
    mass[1] = 1 << 36
    mass[2, 255] = 1 << 40
    mass[3, ::2] = 3
    mass[4, 0] = 1
    mass[4, 1] = 1 << 36
    f = freqs_from_masses(mass)
    assert bool((f.sum(-1) == 1 << 24).all())
    assert int(f.min()) >= 1
    assert int(f[0].argmax()) == 7 and int(f[2].argmax()) == 255


def test_exact_nll_tracks_float_nll(tiny_models):
    """Conversion cost is small: exact bits within 1 % of the float model's NLL."""
    exact = tiny_models[3]
    float_model = exact.float_model()
    x = torch.from_numpy(natural_image(16, 16, 3, seed=2)).permute(2, 0, 1)[None]
    with torch.no_grad():
        fbits = float(nll_bits(float_model(x), x)) * x.numel()
    from arcompress.pixelcnn import forward
    params = forward(exact.ops, exact.ops.embed(x, torch.ones(1, 1, 16, 16))).to(torch.int64)
    head = ExactHead(exact.ops.tables, 3, exact.config.mixtures)
    p = params.permute(0, 2, 3, 1).reshape(256, -1)
    sym = x.permute(0, 2, 3, 1).reshape(256, 3).long()
    head.start(p)
    ebits = 0.0
    for c in range(3):
        ebits += float(exact_bits(head.freqs(c), sym[:, c]).sum())
        head.observe(c, sym[:, c])
    assert math.isclose(ebits, fbits, rel_tol=0.01), (ebits, fbits)


def test_posterior_weights_differ_from_prior_for_green():
    """G's table depends on R through the mixture posterior, not only through the mean coupling."""
    from arcompress import fixedpoint as fp
    tables = fp.build_tables()
    k = 2
    one = fp.ONE
    # two equally likely components: one centred at 0.5 (narrow), one at -0.5 (narrow), no coupling
    logits = [0, 0]
    means = [[0.5 * one, -0.5 * one]] * 3
    log_s = [[-4 * one, -4 * one]] * 3
    coeffs = [[0, 0]] * 3
    p = torch.tensor([logits + sum(means, []) + sum(log_s, []) + sum(coeffs, [])], dtype=torch.int64)
    head = ExactHead(tables, 3, k)
    head.start(p)
    head.freqs(0)
    red_high = torch.tensor([191])  # R near +0.5 selects the first component
    head.observe(0, red_high)
    g = head.freqs(1)
    assert int(g[0, 191]) > 100 * int(g[0, 64])


def test_scale_offsets_shift_exact_and_float_alike(tiny_models):
    """Offset indices move the exact tables as they move the float NLL (within 1 %), at both
    extremes and per channel, so the encoder's float-based choice is the one the coded length follows."""
    from arcompress.pixelcnn import forward
    from arcompress import fixedpoint as fp
    exact = tiny_models[3]
    x = torch.from_numpy(natural_image(16, 16, 3, seed=2)).permute(2, 0, 1)[None]
    params = forward(exact.ops, exact.ops.embed(x, torch.ones(1, 1, 16, 16))).to(torch.int64)
    p = params.permute(0, 2, 3, 1).reshape(256, -1)
    sym = x.permute(0, 2, 3, 1).reshape(256, 3).long()
    seen = []
    for index in ([0, 0, 0], [SCALE_OFFSET_ZERO] * 3, [SCALE_OFFSETS - 1] * 3, [1, 9, 14]):
        offsets = torch.tensor([index])
        fbits = float(tile_bits(params.double() / fp.ONE, x, torch.ones(1, 1, 16, 16), offsets)[0])
        head = ExactHead(exact.ops.tables, 3, exact.config.mixtures)
        head.start(p, scale_offset(offsets.expand(256, 3)))
        ebits = 0.0
        for c in range(3):
            ebits += float(exact_bits(head.freqs(c), sym[:, c]).sum())
            head.observe(c, sym[:, c])
        assert math.isclose(ebits, fbits, rel_tol=0.01), (index, ebits, fbits)
        seen.append(ebits)
    assert len(set(seen)) == 4  # the offsets really change the tables


def test_level_sets_move_the_mass_onto_the_allowed_levels(tiny_models):
    """With a level set, levels outside it get frequency 1 and the levels inside at least what
    they had; tables stay valid (sum 2**24); the posterior for the next channel is unchanged."""
    from arcompress.head import level_mask, levels_used
    model = tiny_models[3]
    gen = torch.Generator().manual_seed(5)
    params = torch.randint(-2000, 2000, (64, model.ops.weights["out"][0].shape[0]), generator=gen)
    sym = torch.randint(0, 64, (64, 3), generator=gen) * 4
    allowed = levels_used(sym[:, 0])
    assert level_mask(allowed).sum() == len(torch.unique(sym[:, 0]))
    plain = ExactHead(model.ops.tables, 3, model.config.mixtures)
    restricted = ExactHead(model.ops.tables, 3, model.config.mixtures, [allowed, None, None])
    plain.start(params)
    restricted.start(params)
    f0, f1 = plain.freqs(0), restricted.freqs(0)
    inside = level_mask(allowed).bool()
    assert bool((f1.sum(-1) == 1 << 24).all()) and bool((f1[:, ~inside] == 1).all())
    assert bool((f1[:, inside] >= f0[:, inside]).all())
    assert float(exact_bits(f1, sym[:, 0]).sum()) < float(exact_bits(f0, sym[:, 0]).sum())
    plain.observe(0, sym[:, 0])
    restricted.observe(0, sym[:, 0])
    assert torch.equal(plain.freqs(1), restricted.freqs(1))
