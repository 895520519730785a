"""Per-image calibration of an image model's output parameters (format 13; coded from 14).

A model trained on some photos is a little off on others in ways that hold across a whole
image: its means a shade too far from the context, its colour coupling a little too strong,
its scales a little too wide.  For each plane group the encoder fits one gain and one offset
per network output (the P mixture logits, means, log-scales and colour coefficients of
:mod:`arcompress.head`) to the image it codes and writes them in the header; encoder and
decoder then code with the calibrated parameters

    p' = clamp(floor(p * (GAIN_ONE + gain) / GAIN_ONE + 1/2) + offset, -ACT_LIMIT, ACT_LIMIT)

computed in integers by :func:`apply`, the one function both sides call, so the decoder's
tables stay the encoder's bit for bit.  ``gain`` is in 1/GAIN_ONE units (a factor from 0 to 2),
``offset`` in the network's fixed point (1/fixedpoint.ONE).

The fit (:func:`fit`, encoder only: any values decode) minimises the float NLL of a random
sample of the plane group's pixels and rounds the values to the precision with the fewest
estimated bits, header field included (format 14 writes them without the trailing zero bits
they share, container.pack_calibration); it is kept only where the estimated saving exceeds
what its field costs, so small images, where a hundred numbers would not pay, carry none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import fixedpoint as fp
from .head import pixel_nll_bits, uniform_pixel_bits

#: gains are in 1/GAIN_ONE units: a parameter is multiplied by (GAIN_ONE + gain) / GAIN_ONE
GAIN_BITS = 12
GAIN_ONE = 1 << GAIN_BITS
#: |gain| <= GAIN_LIMIT (factors 0 to 2); |offset| <= OFFSET_LIMIT (the activations' range)
GAIN_LIMIT = GAIN_ONE
OFFSET_LIMIT = fp.ACT_LIMIT
#: pixels of a plane group the encoder fits on, drawn with a fixed seed
SAMPLE_PIXELS = 1 << 14
#: Adam steps and learning rate of the fit (float units: a gain of 1.0 doubles a parameter)
FIT_STEPS = 80
FIT_LR = 1e-2
#: the coarsest roundings :func:`fit` tries: gains and offsets in multiples of up to 2**12
#: (a gain of 0 or +-1) and 2**15 (an offset of 0 or +-ACT_LIMIT)
PRECISION_SHIFTS = (GAIN_BITS, 15)
#: a calibration is kept where its estimated saving is at least this multiple of its header bits
#: (the sample's estimate is not the whole image's, and the tile offsets chosen after it already
#: take part of the log-scales' gain)
KEEP_FACTOR = 2.0


@dataclass(frozen=True)
class Calibration:
    """One gain and one offset per network output parameter (P each, integers)."""

    gains: tuple[int, ...]
    offsets: tuple[int, ...]
    _tensors: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if len(self.gains) != len(self.offsets):
            raise ValueError("a calibration has one gain and one offset per parameter")
        if any(abs(g) > GAIN_LIMIT for g in self.gains) or any(abs(o) > OFFSET_LIMIT for o in self.offsets):
            raise ValueError("calibration value out of range")

    @property
    def size(self) -> int:
        return len(self.gains)

    def tensors(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(factors (P,), offsets (P,)) as int64 on ``device``, made once."""
        key = str(device)
        if key not in self._tensors:
            self._tensors[key] = (torch.tensor(self.gains, dtype=torch.int64, device=device) + GAIN_ONE,
                                  torch.tensor(self.offsets, dtype=torch.int64, device=device))
        return self._tensors[key]


def apply(params: torch.Tensor, cal: Calibration | None, dim: int = -1) -> torch.Tensor:
    """Calibrated parameters: ``params`` (any shape, P along ``dim``; fixed-point integers in an
    integer or float64 tensor) -> int64 of the same shape; ``params`` unchanged when ``cal`` is None.

    Exact in any order: |p| <= ACT_LIMIT = 2**15 and the factor is at most 2**13, so every product
    is an int64 below 2**28; ``>>`` is the floor division by GAIN_ONE.
    """
    if cal is None:
        return params
    p = params.to(torch.int64)
    if p.shape[dim] != cal.size:
        raise ValueError(f"calibration of {cal.size} parameters for a model with {p.shape[dim]}")
    factor, offset = cal.tensors(p.device)
    shape = [1] * p.dim()
    shape[dim] = cal.size
    out = (p * factor.view(shape) + GAIN_ONE // 2) >> GAIN_BITS
    return (out + offset.view(shape)).clamp_(-fp.ACT_LIMIT, fp.ACT_LIMIT)


def header_bytes(cal: Calibration) -> int:
    """Bytes of ``cal`` in an image header (container.pack_calibration)."""
    from .container import pack_calibration
    return len(pack_calibration(cal.gains, cal.offsets))


def _sample(params: torch.Tensor, tiles: torch.Tensor, inside: torch.Tensor, size: int
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Up to ``size`` pixels drawn at random (fixed seed) from those inside the image:
    (params (S, P) int64, sub-pixels (S, C), the index of each one's tile (S,))."""
    p, c = params.shape[1], tiles.shape[1]
    rows = torch.nonzero(inside.reshape(-1)).flatten()
    pick = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))[:size]]
    flat_p = params.permute(0, 2, 3, 1).reshape(-1, p)
    flat_x = tiles.permute(0, 2, 3, 1).reshape(-1, c)
    return flat_p[pick].to(torch.int64), flat_x[pick], pick // (tiles.shape[2] * tiles.shape[3])


def _pixel_bits(params: torch.Tensor, pixels: torch.Tensor, shifts: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Float NLL (bits) of each pixel (S,): pixels (S, C) under float params (S, P), with
    log-scale offsets ``shifts`` (S, C) in real units (or a number)."""
    return pixel_nll_bits(params.view(*params.shape, 1, 1), pixels.view(*pixels.shape, 1, 1), shifts).view(-1)


def fit(params: torch.Tensor, tiles: torch.Tensor, inside: torch.Tensor, shifts: torch.Tensor | None = None,
        sample: int = SAMPLE_PIXELS, steps: int = FIT_STEPS) -> Calibration | None:
    """The encoder's calibration of a plane group: tiles (N, C, h, w) uint8 under exact params
    (N, P, h, w), inside (N, 1, h, w); None where it would not pay for its header field.
    ``shifts``: the tiles' log-scale offsets (N, C) in fixed point that the encoder would use
    without a calibration (codec: the scale offsets chosen on ``params``), or None.

    Fits gains and offsets by Adam on the float NLL of up to ``sample`` pixels, each at its
    tile's offsets (a calibration must improve on what those already do), rounds them to the
    precision with the fewest estimated bits, header field included (:func:`_precision`), and
    keeps them where the rounded calibration's estimated saving (the sample's, scaled to the plane
    group) is at least KEEP_FACTOR times its header bits.  A pixel's bits are counted as at most
    what a uniform tile would spend on it: where the model is worse than that (white noise),
    the encoder codes tiles uniformly whatever the calibration, so it saves nothing there.
    """
    total = int(inside.sum())
    if total == 0:
        return None
    p_int, x, tile = _sample(params, tiles, inside, sample)
    p = p_int.to(torch.float32) / fp.ONE
    shift = 0.0 if shifts is None else shifts[tile].to(torch.float32) / fp.ONE
    gain = torch.zeros(p.shape[1], requires_grad=True)
    offset = torch.zeros(p.shape[1], requires_grad=True)
    opt = torch.optim.Adam([gain, offset], lr=FIT_LR)
    limit = fp.ACT_LIMIT / fp.ONE
    with torch.enable_grad():
        for _ in range(steps):
            loss = _pixel_bits((p * (1 + gain) + offset).clamp(-limit, limit), x, shift).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    uniform = uniform_pixel_bits(tiles, inside)
    scale = total / len(x)

    def image_bits(params: torch.Tensor) -> float:  # the plane group's estimated bits under float params
        with torch.no_grad():
            return float(_pixel_bits(params, x, shift).clamp(max=uniform).sum()) * scale

    def calibrated_bits(cal: Calibration) -> float:
        return image_bits(apply(p_int, cal).to(torch.float32) / fp.ONE)

    cal = _precision(gain.detach() * GAIN_ONE, offset.detach() * fp.ONE,
                     lambda c: calibrated_bits(c) + 8 * header_bytes(c))
    saving = image_bits(p) - calibrated_bits(cal)
    return cal if saving >= KEEP_FACTOR * 8 * header_bytes(cal) else None


def _rounded(gains: torch.Tensor, offsets: torch.Tensor, gain_shift: int, offset_shift: int) -> Calibration:
    """Gains and offsets (P,) float, in 1/GAIN_ONE and fixed-point units, rounded to multiples
    of 2**gain_shift and 2**offset_shift and clamped to their ranges."""
    def rounded(v, s, limit):
        return tuple((torch.round(v / (1 << s)).clamp(-(limit >> s), limit >> s).long() << s).tolist())
    return Calibration(rounded(gains, gain_shift, GAIN_LIMIT), rounded(offsets, offset_shift, OFFSET_LIMIT))


def _precision(gains: torch.Tensor, offsets: torch.Tensor, cost) -> Calibration:
    """The rounding of the fitted gains and offsets (P,) float with the lowest ``cost``
    (estimated bits, header field included): coarser values take fewer header bits (format 14
    writes them without their common trailing zero bits) and code the image a little worse.
    Chooses the gains' precision, then the offsets', then the gains' again (PRECISION_SHIFTS)."""
    shifts = [0, 0]
    for which in (0, 1, 0):
        best = None
        for s in range(PRECISION_SHIFTS[which] + 1):
            trial = list(shifts)
            trial[which] = s
            c = cost(_rounded(gains, offsets, *trial))
            if best is None or c < best[0]:
                best = (c, s)
        shifts[which] = best[1]
    return _rounded(gains, offsets, *shifts)
