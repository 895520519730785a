"""Exact fixed-point arithmetic shared by every exact model (DESIGN section 2).

Activations are integers with ``ACT_BITS`` fractional bits (a value ``a`` is stored as
``round(a * 2**ACT_BITS)``), clamped to ``[-ACT_LIMIT, ACT_LIMIT]``.  They are carried in
float64 tensors so that convolutions can use the ordinary (fast, multi-threaded, any-device)
float64 kernels: every partial sum is an integer below 2**52 (checked per layer at conversion
time by :func:`check_conv_bound`), hence exact in any summation order.  Rescaling is a
multiplication by a power of two followed by ``floor(x + 0.5)``, also exact in IEEE float64.

Non-linearities are integer lookup tables built once by :func:`build_tables` and stored in the
model file, so the decoder never depends on its own libm.
"""

from __future__ import annotations

import numpy as np
import torch

#: fractional bits of activations (and of the network's output parameters)
ACT_BITS = 10
ONE = 1 << ACT_BITS
#: activations are clamped to +-ACT_LIMIT (i.e. +-32.0)
ACT_LIMIT = 32 * ONE
#: weights are integers in [-WEIGHT_MAX, WEIGHT_MAX] with a power-of-two scale per output channel
WEIGHT_MAX = (1 << 15) - 1
#: largest magnitude of an exact float64 partial sum we allow (2**52 leaves one bit spare)
EXACT_LIMIT = float(1 << 52)

#: ELU / sigmoid / tanh / exp tables cover inputs in [-RANGE, RANGE] (in real units)
ELU_RANGE = 16
SIGMOID_RANGE = 16
TANH_RANGE = 8
EXP_RANGE = 16
#: log-scale clamp of the logistic head, real units
LOG_SCALE_MIN = -7.0
LOG_SCALE_MAX = 3.0
#: the CDF table: input t with CDF_T_BITS fractional bits, output with CDF_BITS bits
CDF_T_BITS = 12
CDF_BITS = 16
#: mixture weights and softmax outputs carry WEIGHT_BITS bits
MIX_BITS = 16
#: the inverse-scale table holds exp(-log_scale) / 255 with INV_SCALE_BITS fractional bits
#: (the 1/255 turns half-pixel distances into the logistic's units, so the head needs no division)
INV_SCALE_BITS = 24

#: version of this arithmetic; recorded in every .arc file and every model file
SCHEME_VERSION = 1


def _round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(x + 0.5)


def build_tables() -> dict[str, torch.Tensor]:
    """Build the integer lookup tables of the exact scheme (int64 tensors).

    Called once when a model is converted; the tables are then saved in the model file and
    read back from it, never rebuilt at decode time.
    """
    tables: dict[str, np.ndarray] = {}
    # ELU for negative inputs: index = x_fixed + ELU_RANGE*ONE, x_fixed in [-ELU_RANGE*ONE, 0]
    x = np.arange(-ELU_RANGE * ONE, 1, dtype=np.float64) / ONE
    tables["elu"] = _round_half_up(np.expm1(x) * ONE)
    # sigmoid for gates, output scaled by ONE
    x = np.arange(-SIGMOID_RANGE * ONE, SIGMOID_RANGE * ONE + 1, dtype=np.float64) / ONE
    tables["sigmoid"] = _round_half_up(ONE / (1.0 + np.exp(-x)))
    # tanh of the colour-coupling coefficients, output scaled by ONE
    x = np.arange(-TANH_RANGE * ONE, TANH_RANGE * ONE + 1, dtype=np.float64) / ONE
    tables["tanh"] = _round_half_up(np.tanh(x) * ONE)
    # exp for the softmax of mixture logits, inputs in [-EXP_RANGE, 0], output 2**MIX_BITS scale, >= 1
    x = np.arange(-EXP_RANGE * ONE, 1, dtype=np.float64) / ONE
    tables["exp"] = np.maximum(_round_half_up(np.exp(x) * (1 << MIX_BITS)), 1.0)
    # exp(-log_scale) / 255 for log_scale in [LOG_SCALE_MIN, LOG_SCALE_MAX], 2**INV_SCALE_BITS scale
    x = np.arange(int(LOG_SCALE_MIN * ONE), int(LOG_SCALE_MAX * ONE) + 1, dtype=np.float64) / ONE
    tables["inv_scale"] = _round_half_up(np.exp(-x) * (1 << INV_SCALE_BITS) / 255)
    # logistic CDF: t with CDF_T_BITS fractional bits in [-16, 16], output 2**CDF_BITS scale
    t = np.arange(-16 << CDF_T_BITS, (16 << CDF_T_BITS) + 1, dtype=np.float64) / (1 << CDF_T_BITS)
    tables["cdf"] = _round_half_up((1 << CDF_BITS) / (1.0 + np.exp(-t)))
    return {k: torch.from_numpy(v.astype(np.int64)) for k, v in tables.items()}


TABLE_SIZES = {
    "elu": ELU_RANGE * ONE + 1,
    "sigmoid": 2 * SIGMOID_RANGE * ONE + 1,
    "tanh": 2 * TANH_RANGE * ONE + 1,
    "exp": EXP_RANGE * ONE + 1,
    "inv_scale": int((LOG_SCALE_MAX - LOG_SCALE_MIN) * ONE) + 1,
    "cdf": (32 << CDF_T_BITS) + 1,
}


def validate_tables(tables: dict[str, torch.Tensor]) -> None:
    """Raise ValueError unless ``tables`` has every table, of the right size, monotone where needed."""
    for name, size in TABLE_SIZES.items():
        t = tables.get(name)
        if t is None or t.dtype != torch.int64 or t.shape != (size,):
            raise ValueError(f"model file: lookup table {name!r} is missing or has the wrong shape")
    cdf = tables["cdf"]
    if bool((cdf[1:] < cdf[:-1]).any()) or int(cdf[0]) != 0 or int(cdf[-1]) != (1 << CDF_BITS):
        raise ValueError("model file: the CDF lookup table is not monotone from 0 to 2**16")
    if int(tables["exp"].min()) < 1 or int(tables["exp"].max()) > (1 << MIX_BITS):
        raise ValueError("model file: the exp lookup table is out of range")
    # the head's sentinel edges (+-2**30, minus a mean of at most 40*255 half-pixels) must
    # saturate t = diff * inv_scale >> 22 at +-16 * 2**CDF_T_BITS
    t_sat = (16 << CDF_T_BITS) << (ACT_BITS + INV_SCALE_BITS - CDF_T_BITS)
    if int(tables["inv_scale"].min()) * ((1 << 30) - ((40 * 255) << ACT_BITS)) < t_sat \
            or int(tables["inv_scale"].max()) > (1 << 28):
        raise ValueError("model file: the inverse-scale lookup table is out of range")
    for name in ("elu", "sigmoid", "tanh"):
        if int(tables[name].abs().max()) > ACT_LIMIT:
            raise ValueError(f"model file: lookup table {name!r} is out of range")


def lookup(table: torch.Tensor, x: torch.Tensor, lo: int) -> torch.Tensor:
    """``table[clamp(x - lo)]`` for an integer-valued float64 or int64 tensor ``x``; same dtype as x."""
    idx = (x.to(torch.int64) - lo).clamp_(0, table.numel() - 1)
    return torch.take(table, idx).to(x.dtype)  # take: a faster gather than table[idx], same values


def rescale(x: torch.Tensor, shift: torch.Tensor | int) -> torch.Tensor:
    """``floor(x * 2**-shift + 0.5)``, exact for integer-valued float64 ``x`` with |x| < 2**52.

    ``shift`` is an int or a tensor that broadcasts against ``x`` (per-channel shifts).
    """
    if isinstance(shift, int):
        return torch.floor(x * (2.0 ** -shift) + 0.5)
    return torch.floor(x * torch.exp2(-shift) + 0.5)


def rescale_(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """:func:`rescale` in place, with the factor ``scale = 2**-shift`` given (the same bits, without
    the temporaries: the exact passes over whole images and recordings are bound by memory traffic)."""
    return x.mul_(scale).add_(0.5).floor_()


def clamp_act(x: torch.Tensor) -> torch.Tensor:
    return x.clamp_(-ACT_LIMIT, ACT_LIMIT)


def quantize_weight(w: torch.Tensor, b: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Float conv weight (O, I, kh, kw) and bias (O) -> (int weight, per-channel shift, int bias).

    The integer weight ``W = round(w * 2**shift)`` uses the largest ``shift`` (per output
    channel) with ``|W| <= WEIGHT_MAX``.  The bias is stored at the accumulator's scale,
    ``round(b * 2**(shift + ACT_BITS))``.
    """
    w = w.detach().double()
    out_ch = w.shape[0]
    wmax = w.abs().reshape(out_ch, -1).amax(dim=1).clamp_min(1e-30)
    shift = torch.floor(torch.log2(WEIGHT_MAX / wmax)).clamp(-8, 40)
    # guard against log2 rounding up past the limit
    over = (torch.round(wmax * torch.exp2(shift)) > WEIGHT_MAX)
    shift = shift - over.double()
    wi = torch.round(w * torch.exp2(shift).view(-1, 1, 1, 1))
    bias = b.detach().double() if b is not None else torch.zeros(out_ch, dtype=torch.float64)
    bi = torch.round(bias * torch.exp2(shift + ACT_BITS))
    return wi.to(torch.int64), shift.to(torch.int64), bi.to(torch.int64)


def check_conv_bound(wi: torch.Tensor, bi: torch.Tensor, name: str) -> None:
    """Raise ValueError unless every partial sum of this layer is an exact float64 integer.

    Worst case over all inputs: ``sum |W| * ACT_LIMIT + |b| < 2**52`` for every output channel.
    """
    worst = wi.abs().reshape(wi.shape[0], -1).sum(dim=1).double() * ACT_LIMIT + bi.abs().double()
    if float(worst.max()) >= EXACT_LIMIT:
        raise ValueError(f"layer {name}: worst-case accumulator {float(worst.max()):.3g} >= 2**52")
    if int(wi.abs().max()) > WEIGHT_MAX:
        raise ValueError(f"layer {name}: integer weight out of range")


def exact_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, shift: torch.Tensor,
                 conv=torch.nn.functional.conv2d) -> torch.Tensor:
    """Exact integer convolution: (N, I, h, w) fixed-point input -> (N, O, h', w') fixed-point output.

    ``weight`` (float64, integer-valued), ``bias`` (float64, accumulator scale) and ``shift``
    (float64, per output channel) come from :func:`quantize_weight`.  ``conv`` may be any
    algorithm that approximates the direct convolution to within +-0.5 (FFT, Winograd): the
    ``round`` after accumulation repairs it, so the result is the same bits.
    """
    acc = conv(x, weight).round_().add_(bias.view(1, -1, 1, 1))
    return clamp_act(rescale_(acc, torch.exp2(-shift).view(1, -1, 1, 1)))


def fixed_from_pixels(x: torch.Tensor) -> torch.Tensor:
    """uint8-valued pixels 0..255 -> fixed-point value of ``x/127.5 - 1`` (same dtype as float64 out).

    ``round((2x - 255) * ONE / 255)`` computed in integers, half rounded up.
    """
    xi = x.to(torch.int64)
    num = (2 * xi - 255) * ONE
    return torch.div(2 * num + 255, 2 * 255, rounding_mode="floor").to(torch.float64)

