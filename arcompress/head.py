"""Discretized logistic mixture head: float NLL for training, exact integer pmf tables for coding.

Parameter layout of a pixel's P = K * (1 + 2C + C(C-1)/2) values (K mixtures, C channels):
``logits[K], means[C, K], log_scales[C, K], coeffs[C(C-1)/2, K]``.  Channel ``c``'s mean is
shifted by ``sum_{j<c} tanh(coeff[c, j]) * x_j`` (PixelCNN++'s linear R->G->B coupling,
generalised to C channels), with ``x_j`` the already-known sub-pixel scaled to [-1, 1].

The joint likelihood is ``sum_k pi_k prod_c p_k(x_c | x_<c)``.  The coder needs it channel by
channel, ``p(x_c | x_<c) = sum_k w_k p_k(x_c | x_<c)``, with *posterior* weights
``w_k ~ pi_k prod_{j<c} p_k(x_j | x_<j)``; :func:`channel_freqs` computes exactly that in
integer arithmetic, so the coded length matches the training loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import fixedpoint as fp

#: constriction's default precision: every table sums to 2**PRECISION
PRECISION = 24
LEVELS = 256


def num_params(channels: int, mixtures: int) -> int:
    return mixtures * (1 + 2 * channels + channels * (channels - 1) // 2)


def _coeff_index(c: int, j: int) -> int:
    """Row of coefficient (channel c, earlier channel j) in the coeffs block."""
    return c * (c - 1) // 2 + j


def split_params(params: torch.Tensor, channels: int, mixtures: int):
    """(..., P) -> logits (..., K), means (..., C, K), log_scales (..., C, K), coeffs (..., C', K)."""
    k, c = mixtures, channels
    lead = params.shape[:-1]
    logits = params[..., :k]
    means = params[..., k:k + c * k].reshape(*lead, c, k)
    log_scales = params[..., k + c * k:k + 2 * c * k].reshape(*lead, c, k)
    coeffs = params[..., k + 2 * c * k:].reshape(*lead, c * (c - 1) // 2, k)
    return logits, means, log_scales, coeffs


# ----------------------------------------------------------------------------- float (training)

#: per-tile scale adaptation: for each tile and channel the encoder picks one of SCALE_OFFSETS
#: offsets added to the channel's log-scales, ``(index - SCALE_OFFSET_ZERO) * SCALE_OFFSET_STEP``
#: in fixed point (-0.5 to +1.375 in steps of 1/8: scales 0.61x to 3.96x), and writes the index
SCALE_OFFSETS = 16
SCALE_OFFSET_ZERO = 4
SCALE_OFFSET_STEP = fp.ONE // 8
#: format 12 on: the index, after the scale offsets, of a tile's channel coded with a uniform
#: table over its levels (:func:`uniform_freqs`) instead of the model's (noise)
UNIFORM_TILE = SCALE_OFFSETS


def scale_offset(index: torch.Tensor) -> torch.Tensor:
    """Offset indices (any shape, int) -> log-scale offsets in fixed point (int64)."""
    return (index.to(torch.int64) - SCALE_OFFSET_ZERO) * SCALE_OFFSET_STEP


def pixel_nll_bits(params: torch.Tensor, pixels: torch.Tensor,
                   log_scale_offset: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Float NLL in bits of each pixel (all its channels): (B, H, W).

    params: (B, P, H, W) network output; pixels: (B, C, H, W) integers 0..255;
    log_scale_offset: added to the log-scales, a number or a (B, C) tensor (per tile and channel).
    """
    b, c, h, w = pixels.shape
    k = params.shape[1] // (1 + 2 * c + c * (c - 1) // 2)
    p = params.permute(0, 2, 3, 1)  # (B, H, W, P)
    logits, means, log_scales, coeffs = split_params(p, c, k)
    x = pixels.permute(0, 2, 3, 1).to(params.dtype) / 127.5 - 1.0  # (B, H, W, C)
    if isinstance(log_scale_offset, torch.Tensor):
        log_scale_offset = log_scale_offset.to(params.dtype).view(b, 1, 1, c, 1)
    log_scales = (log_scales + log_scale_offset).clamp(fp.LOG_SCALE_MIN, fp.LOG_SCALE_MAX)
    log_prob = F.log_softmax(logits, dim=-1)  # (B, H, W, K)
    for ch in range(c):
        mu = means[..., ch, :]
        for j in range(ch):
            mu = mu + torch.tanh(coeffs[..., _coeff_index(ch, j), :]) * x[..., j:j + 1]
        log_prob = log_prob + _logistic_log_prob(x[..., ch:ch + 1], mu, log_scales[..., ch, :])
    return -torch.logsumexp(log_prob, dim=-1) / math.log(2)


def nll_bits(params: torch.Tensor, pixels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Float NLL in bits per sub-pixel (scalar, mean over coded sub-pixels).

    params: (B, P, H, W) network output; pixels: (B, C, H, W) integers 0..255;
    mask: optional (B, 1, H, W), 1 where a pixel is coded.
    """
    c = pixels.shape[1]
    bits = pixel_nll_bits(params, pixels)
    if mask is None:
        return bits.mean() / c
    m = mask[:, 0].to(bits.dtype)
    return (bits * m).sum() / (c * m.sum().clamp_min(1))


def tile_bits(params: torch.Tensor, pixels: torch.Tensor, inside: torch.Tensor,
              offsets: torch.Tensor) -> torch.Tensor:
    """Float NLL in bits of each tile (B,) with scale-offset indices ``offsets`` (B, C).

    params: (B, P, h, w) in the network's float units (exact params / fixedpoint.ONE);
    pixels: (B, C, h, w); inside: (B, 1, h, w).
    """
    off = scale_offset(offsets).to(params.dtype) / fp.ONE
    return (pixel_nll_bits(params, pixels, off) * inside[:, 0].to(params.dtype)).sum((1, 2))


def tile_bits_by_offset(params: torch.Tensor, pixels: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """Float NLL in bits of each tile (B, SCALE_OFFSETS) with one offset index for all channels."""
    b, c = pixels.shape[:2]
    cols = [tile_bits(params, pixels, inside, torch.full((b, c), index)) for index in range(SCALE_OFFSETS)]
    return torch.stack(cols, 1)


def choose_scale_offsets(params: torch.Tensor, pixels: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """The encoder's per-tile, per-channel choice of offset indices (B, C) int64: the best common
    offset, then each channel's best given the others (float NLL; no offset for a tile without
    pixels).  Any choice decodes; this one is only the encoder's best guess."""
    b, c = pixels.shape[:2]
    best = tile_bits_by_offset(params, pixels, inside).argmin(dim=1)
    chosen = best.view(b, 1).repeat(1, c)
    for ch in range(c if c > 1 else 0):
        cols = []
        for index in range(SCALE_OFFSETS):
            trial = chosen.clone()
            trial[:, ch] = index
            cols.append(tile_bits(params, pixels, inside, trial))
        chosen[:, ch] = torch.stack(cols, 1).argmin(dim=1)
    empty = ~inside.flatten(1).any(1)
    chosen[empty] = SCALE_OFFSET_ZERO
    return chosen


def _logistic_log_prob(x: torch.Tensor, mu: torch.Tensor, log_s: torch.Tensor) -> torch.Tensor:
    """log P(bin of x) under a logistic discretized to 256 levels in [-1, 1]; edges +-1/255."""
    centered = x - mu
    inv_s = torch.exp(-log_s)
    plus = inv_s * (centered + 1.0 / 255)
    minus = inv_s * (centered - 1.0 / 255)
    cdf_plus = torch.sigmoid(plus)
    cdf_minus = torch.sigmoid(minus)
    log_cdf_plus = plus - F.softplus(plus)  # log sigmoid, for x = 0
    log_one_minus_cdf_minus = -F.softplus(minus)  # for x = 255
    cdf_delta = cdf_plus - cdf_minus
    mid = inv_s * centered
    log_pdf_mid = mid - log_s - 2.0 * F.softplus(mid)
    inner = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp_min(1e-12)),
                        log_pdf_mid - math.log(127.5))
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_one_minus_cdf_minus, inner))


# ----------------------------------------------------------------------------- exact (coding)

def _component_pmfs(mu: torch.Tensor, log_s: torch.Tensor, tables, cdf_f: torch.Tensor) -> torch.Tensor:
    """Integer per-component bin masses (N, K, 256) on the 2**CDF_BITS scale, as float64.

    mu, log_s: (N, K) fixed-point (ACT_BITS) integers in int64; ``cdf_f``: ``tables["cdf"]`` as
    float64.  Works in half-pixel units: bin x spans [2x - 1, 2x + 1]; the mean is
    ``(mu + 1) * 255``.  Integer arithmetic carried in float64 (vectorised where int64
    multiplication is not): for the inner edges ``|edge - mean| < 2**24`` (the mean is at most
    35 * 255 half-pixels) and the inverse scale is below 2**28, so every product is an exact
    integer below 2**52 and the scaling by 2**-22 then ``floor`` is the floor division; the
    sentinel edges' products (up to 2**58, rounded) saturate t at the table's ends either way.
    """
    one = fp.ONE
    ls = log_s.clamp(int(fp.LOG_SCALE_MIN * one), int(fp.LOG_SCALE_MAX * one))
    # exp(-ls)/255 on the 2**24 scale, times 2**-22 (exact: a power of two)
    inv_s = tables["inv_scale"][ls - int(fp.LOG_SCALE_MIN * one)].to(torch.float64) \
        * 2.0 ** -(fp.ACT_BITS + fp.INV_SCALE_BITS - fp.CDF_T_BITS)
    mu_half = ((mu + one) * 255).to(torch.float64)  # (N, K), ACT_BITS fractional bits, half-pixel units
    t = _edges(mu.device) - mu_half.unsqueeze(-1)  # (N, K, 257), exact
    t.mul_(inv_s.unsqueeze(-1)).floor_()  # (edge - mean) / scale with CDF_T_BITS fractional bits
    lim = float(16 << fp.CDF_T_BITS)
    cdf = torch.take(cdf_f, t.clamp_(-lim, lim).add_(lim).long())  # the sentinels give 0 and 2**16
    return cdf[..., 1:] - cdf[..., :-1]


_EDGES: dict = {}


def _edges(device) -> torch.Tensor:
    """Bin edges in half-pixel units, fixed-point (float64 holding integers), shape (1, 1, 257):
    -2**30, 1, 3, ..., 509, 2**30.

    The outer sentinels are far enough that t saturates at the CDF table's ends (exactly 0 and
    2**16, checked by fixedpoint.validate_tables) for every scale the head allows.
    """
    key = str(device)
    if key not in _EDGES:
        inner = torch.arange(1, 2 * LEVELS - 1, 2, device=device, dtype=torch.int64) * fp.ONE
        sentinel = torch.tensor([1 << 30], device=device, dtype=torch.int64)
        _EDGES[key] = torch.cat([-sentinel, inner, sentinel]).view(1, 1, -1).to(torch.float64)
    return _EDGES[key]


def prior_weights(logits: torch.Tensor, tables) -> torch.Tensor:
    """Integer softmax: (N, K) fixed-point logits -> (N, K) weights >= 1 on the 2**MIX_BITS scale."""
    m = logits.max(dim=-1, keepdim=True).values
    lo = -fp.EXP_RANGE * fp.ONE
    return tables["exp"][(logits - m).clamp(lo, 0) - lo]


def _normalize(w: torch.Tensor) -> torch.Tensor:
    """Rescale non-negative int64 weights (N, K) to sum to about 2**MIX_BITS (floor)."""
    total = w.sum(dim=-1, keepdim=True)
    return torch.div(w << fp.MIX_BITS, total, rounding_mode="floor")


def freqs_from_masses(mass: torch.Tensor) -> torch.Tensor:
    """Non-negative integer masses (N, n) -> frequencies >= 1 summing to exactly 2**PRECISION.

    Rows whose total reaches 2**38 are first halved (integer shift) until it does not, so that
    ``mass * 2**PRECISION`` stays below 2**63.  The head's masses are below 2**37 anyway.
    """
    total = mass.sum(dim=-1, keepdim=True)
    while bool((total >= 1 << 38).any()):
        mass = torch.where(total >= 1 << 38, mass >> 1, mass)
        total = mass.sum(dim=-1, keepdim=True)
    total = total.clamp_min(1)
    free = (1 << PRECISION) - mass.shape[-1]
    freq = torch.div(mass * free, total, rounding_mode="floor") + 1
    deficit = (1 << PRECISION) - freq.sum(dim=-1)
    top = freq.argmax(dim=-1)
    freq[torch.arange(freq.shape[0], device=freq.device), top] += deficit
    return freq


def uniform_freqs(levels: int | None) -> torch.Tensor:
    """(1, 256): the table of a channel coded uniformly (UNIFORM_TILE): equal frequencies on the
    levels of the 256-bit set ``levels`` (all 256 when None: 8 bits a symbol), 1 elsewhere."""
    mass = torch.ones(1, LEVELS, dtype=torch.int64) if levels is None else level_mask(levels).view(1, -1)
    return freqs_from_masses(mass)


def level_mask(mask: int) -> torch.Tensor:
    """A 256-bit level set (bit v: level v) -> (256,) int64 of 0 and 1."""
    return torch.tensor([mask >> v & 1 for v in range(LEVELS)], dtype=torch.int64)


def uniform_pixel_bits(tiles: torch.Tensor, inside: torch.Tensor) -> float:
    """Bits a pixel of tiles (N, C, h, w) costs where its tile is coded uniformly (UNIFORM_TILE):
    log2 of the number of levels each channel uses inside (N, 1, h, w), summed over channels."""
    c = tiles.shape[1]
    sym = tiles.transpose(0, 1).reshape(c, -1)[:, inside.reshape(-1).bool()]
    return sum(math.log2(max(1, bin(levels_used(sym[ch])).count("1"))) for ch in range(c))


def levels_used(values: torch.Tensor) -> int:
    """The 256-bit level set of the uint8 values in ``values`` (any shape)."""
    present = torch.bincount(values.reshape(-1).to(torch.int64), minlength=LEVELS) > 0
    return sum(1 << v for v in torch.nonzero(present).flatten().tolist())


class ExactHead:
    """Integer pmf tables for one channel at a time, with posterior mixture weights.

    ``start(params, shifts, uniform)`` takes (N, P) fixed-point params, optional (N, C)
    fixed-point log-scale offsets and an optional (N, C) bool of the rows' channels coded with
    uniform tables (UNIFORM_TILE, format 12); then for c = 0..C-1:
    ``freqs(c)`` gives (N, 256) int64 tables (or ``masses(c)`` the masses they are built from)
    and ``observe(c, symbols)`` feeds the coded values.

    ``levels``: optional per channel, the levels that channel may take (a 256-bit mask, bit v for
    level v, as in the file header), or None for all; the mixture's mass outside the set is
    dropped before the table is built, so those levels get the minimum frequency 1.  The
    posterior mixture weights use the unrestricted component masses either way.  A uniform
    channel's table is :func:`uniform_freqs` of its level set, whatever the model says; the
    model still runs there, because the later channels' means and weights read its values.
    """

    def __init__(self, tables: dict[str, torch.Tensor], channels: int, mixtures: int,
                 levels: list[int | None] | None = None):
        self.tables, self.C, self.K = tables, channels, mixtures
        self._cdf_f = tables["cdf"].to(torch.float64)
        sets = levels or [None] * channels
        self.allowed = [None if m is None else level_mask(m) for m in sets]
        self.flat = [uniform_freqs(m) for m in sets]

    def start(self, params: torch.Tensor, shifts: torch.Tensor | None = None,
              uniform: torch.Tensor | None = None) -> None:
        """params (N, P) fixed point; shifts: optional (N, C) log-scale offsets in fixed point
        (:func:`scale_offset` of the indices, converted once by the caller, not every step);
        uniform: optional (N, C) bool, the rows' channels whose tables are uniform (None, or
        all False: none)."""
        self.uniform = uniform
        p = params.to(torch.int64)
        self.logits, self.means, self.log_scales, self.coeffs = split_params(p, self.C, self.K)
        if shifts is not None:
            self.log_scales = self.log_scales + shifts.unsqueeze(-1)
        self.weights = prior_weights(self.logits, self.tables)
        self.known: list[torch.Tensor] = []  # coded channels, fixed-point in [-1, 1], (N, 1) each
        self._pmfs = None

    def _mean(self, c: int) -> torch.Tensor:
        mu = self.means[:, c, :]
        lo = -fp.TANH_RANGE * fp.ONE
        for j, xn in enumerate(self.known[:c]):
            alpha = self.tables["tanh"][self.coeffs[:, _coeff_index(c, j), :].clamp(lo, -lo) - lo]
            mu = mu + ((alpha * xn + fp.ONE // 2) >> fp.ACT_BITS)  # >> is floor division by ONE
        return mu

    def masses(self, c: int) -> torch.Tensor:
        """(N, 256) int64: the mixture's integer mass of each level of channel c, before any
        level set (each below 2**32); ``observe(c, ...)`` may follow."""
        self._pmfs = _component_pmfs(self._mean(c), self.log_scales[:, c, :], self.tables, self._cdf_f)
        # each product is below 2**32 and there are at most 16: exact in float64, in any order
        return torch.bmm(self.weights.to(torch.float64).unsqueeze(1), self._pmfs)[:, 0].to(torch.int64)

    def freqs(self, c: int) -> torch.Tensor:
        """(N, 256) int64: the coding tables of channel c, each summing to 2**PRECISION."""
        mass = self.masses(c)
        if self.allowed[c] is not None:
            mass = mass * self.allowed[c].to(mass.device)
        freqs = freqs_from_masses(mass)
        if self.uniform is not None:
            freqs = torch.where(self.uniform[:, c:c + 1], self.flat[c].to(freqs.device), freqs)
        return freqs

    def observe(self, c: int, symbols: torch.Tensor) -> None:
        """Update the posterior weights with the coded values (N,) of channel c."""
        sym = symbols.to(torch.int64)
        self.known.append(fp.fixed_from_pixels(sym).to(torch.int64).unsqueeze(-1))  # (N, 1), once
        if c + 1 < self.C:
            like = self._pmfs.gather(2, sym.view(-1, 1, 1).expand(-1, self.K, 1))[..., 0].to(torch.int64)
            self.weights = _normalize(self.weights * like.clamp_min(1))


def exact_bits(freqs: torch.Tensor, symbols: torch.Tensor) -> torch.Tensor:
    """Ideal code length in bits of each symbol under its integer table: -log2(f / 2**PRECISION)."""
    f = freqs.gather(1, symbols.to(torch.int64).view(-1, 1))[:, 0].double()
    return PRECISION - torch.log2(f)
