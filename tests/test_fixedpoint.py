"""The exact arithmetic: rescaling, weight quantization bounds, lookup tables, the rounding guard."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from arcompress import fixedpoint as fp


def test_rescale_is_floor_half_up():
    x = torch.tensor([-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 2.0**40 + 1, -(2.0**40) - 3], dtype=torch.float64)
    got = fp.rescale(x, 1)
    want = torch.tensor([np.floor(v / 2 + 0.5) for v in x.tolist()], dtype=torch.float64)
    assert torch.equal(got, want)
    assert torch.equal(fp.rescale(torch.tensor([5.0, -5.0]), torch.tensor([2.0, 2.0])),
                       torch.tensor([1.0, -1.0]))


def test_quantize_weight_uses_full_range_and_respects_bound():
    w = torch.randn(6, 4, 2, 3) * torch.tensor([1e-4, 1e-2, 1, 10, 300, 0]).view(-1, 1, 1, 1)
    wi, sh, bi = fp.quantize_weight(w, torch.randn(6))
    assert int(wi.abs().max()) <= fp.WEIGHT_MAX
    nonzero = wi.abs().reshape(6, -1).amax(1)[:5]
    assert bool((nonzero > fp.WEIGHT_MAX // 2).all())  # at least 15 of the 16 bits used
    fp.check_conv_bound(wi, bi, "x")
    with pytest.raises(ValueError, match="2\\*\\*52"):
        fp.check_conv_bound(torch.full((1, 1 << 23, 1, 1), fp.WEIGHT_MAX), torch.zeros(1, dtype=torch.int64), "big")


def test_tables_validate_and_reject_tampering():
    tables = fp.build_tables()
    fp.validate_tables(tables)
    bad = dict(tables)
    bad["cdf"] = tables["cdf"].flip(0)
    with pytest.raises(ValueError, match="monotone"):
        fp.validate_tables(bad)
    bad = dict(tables)
    bad["elu"] = tables["elu"][:-1]
    with pytest.raises(ValueError, match="elu"):
        fp.validate_tables(bad)


def test_fixed_from_pixels_matches_rounded_formula():
    x = torch.arange(256)
    want = torch.tensor([np.floor((2 * v - 255) * 1024 / 255 + 0.5) for v in range(256)], dtype=torch.float64)
    assert torch.equal(fp.fixed_from_pixels(x), want)


def _fft_conv2d(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Valid cross-correlation through the FFT: approximately the direct sum, with float error."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    fh, fw = h + kh - 1, wd + kw - 1
    X = torch.fft.rfft2(x, s=(fh, fw))
    W = torch.fft.rfft2(w.flip(-1).flip(-2), s=(fh, fw))
    y = torch.fft.irfft2(torch.einsum("nchw,ochw->nohw", X, W), s=(fh, fw))
    return y[:, :, kh - 1:h, kw - 1:wd]


def test_non_direct_convolution_behind_rounding_guard_gives_same_bits():
    torch.manual_seed(0)
    x = torch.randint(-fp.ACT_LIMIT, fp.ACT_LIMIT + 1, (2, 16, 9, 11)).double()
    wi, sh, bi = fp.quantize_weight(torch.randn(8, 16, 2, 3), torch.randn(8))
    w, b, s = wi.double(), bi.double(), sh.double()
    direct = fp.exact_conv2d(x, w, b, s)
    approx = _fft_conv2d(x, w)
    assert not torch.equal(approx, F.conv2d(x, w))  # the FFT really is inexact...
    assert torch.equal(fp.exact_conv2d(x, w, b, s, conv=_fft_conv2d), direct)  # ...and the guard repairs it
