"""PixelCNN++ with its strided multi-resolution structure (Salimans et al. 2017, section 2.3).

The same two streams as :mod:`arcompress.pixelcnn` (``u``: down-shifted 2x3, ``ul``:
down-right-shifted 2x2 plus ``u`` through a 1x1), arranged as a U-net over ``R`` resolutions
(H x W, ceil(H/2) x ceil(W/2), ...), ``N`` gated resnet blocks per resolution and pass:

* down pass: ``N`` blocks at resolution 0, then a stride-2 causal convolution of each stream
  (``down{r}.u`` 2x3, ``down{r}.ul`` 2x2, on the raw features), ``N`` blocks at resolution 1, ...;
  every block's output is kept as a skip connection;
* up pass: from the lowest resolution up, ``N`` blocks per resolution whose 1x1 auxiliary input is
  the mirrored down block's output (``u``: its ``u``; ``ul``: ``[u, its ul]``), then 2x up-sampling
  of each stream to the next resolution: a 1x1 convolution to 4 x F maps and a pixel shuffle, which
  is the paper's 2x2 stride-2 transposed convolution (``ul``).  For ``u`` the paper uses a 2x3
  transposed convolution; we use the same 2x2 form, whose output at (p, q) reads the coarse
  feature at (p // 2, q // 2) only.

Causality: a ``ul`` feature at resolution r and position (a, b) depends only on pixels before
(a * 2**r, b * 2**r) in raster order, a ``u`` feature only on rows above a * 2**r, so the output at
pixel (i, j) sees pixels before (i, j) only (tested).

The cached decoder (as in Fast PixelCNN++, Ramachandran et al. 2017) computes a coarse position
(a, b) of resolution r at the full-resolution step (a * 2**r, b * 2**r), when every input it needs
is known, and keeps per-resolution row caches: a step costs O(layers) and the coarse layers run on
1/4, 1/16 ... of the steps.  ``R = 1`` is the single-resolution network of :mod:`arcompress.pixelcnn`
with the up pass added; the shipped single-resolution models use :mod:`arcompress.pixelcnn`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from . import pixelcnn
from .head import num_params
from .pixelcnn import (PAD_DOWN_1x3, PAD_DOWN_2x3, PAD_DOWNRIGHT_2x1, PAD_DOWNRIGHT_2x2, _resblock,
                       down_shift, right_shift)

ARCH = "pixelcnn++-multires"


@dataclass(frozen=True)
class MultiResConfig:
    """Architecture: PixelCNN++'s fields; ``blocks`` per resolution and pass; ``resolutions`` R."""

    channels: int = 3
    filters: int = 48
    blocks: int = 1
    mixtures: int = 5
    dropout: float = 0.0
    resolutions: int = 3

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "MultiResConfig":
        unknown = set(d) - set(MultiResConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        cfg = MultiResConfig(**d)
        if not (1 <= cfg.channels <= 4 and 1 <= cfg.filters <= 512 and 1 <= cfg.blocks <= 16
                and 1 <= cfg.mixtures <= 32 and 1 <= cfg.resolutions <= 5):
            raise ValueError(f"model config out of range: {d}")
        return cfg


def _blocks_of(cfg: MultiResConfig, r: int) -> range:
    """Indices of the blocks at resolution r (the same index in the down and the up pass)."""
    return range(r * cfg.blocks, (r + 1) * cfg.blocks)


def layer_specs(cfg: MultiResConfig) -> dict[str, tuple[int, int, tuple[int, int]]]:
    """Layer table: name -> (in channels, out channels, kernel (h, w))."""
    f, c_in = cfg.filters, cfg.channels + 1
    specs: dict[str, tuple[int, int, tuple[int, int]]] = {
        "u_in": (c_in, f, (2, 3)),
        "ul_in_a": (c_in, f, (1, 3)),
        "ul_in_b": (c_in, f, (2, 1)),
    }
    for r in range(cfg.resolutions):
        if r > 0:
            specs[f"down{r}.u"] = (f, f, (2, 3))
            specs[f"down{r}.ul"] = (f, f, (2, 2))
        for k in _blocks_of(cfg, r):
            specs[f"u{k}.c1"] = (2 * f, f, (2, 3))
            specs[f"u{k}.c2"] = (2 * f, 2 * f, (2, 3))
            specs[f"ul{k}.c1"] = (2 * f, f, (2, 2))
            specs[f"ul{k}.nin"] = (2 * f, f, (1, 1))
            specs[f"ul{k}.c2"] = (2 * f, 2 * f, (2, 2))
    for r in reversed(range(cfg.resolutions)):
        for k in reversed(_blocks_of(cfg, r)):
            specs[f"up_u{k}.c1"] = (2 * f, f, (2, 3))
            specs[f"up_u{k}.nin"] = (2 * f, f, (1, 1))
            specs[f"up_u{k}.c2"] = (2 * f, 2 * f, (2, 3))
            specs[f"up_ul{k}.c1"] = (2 * f, f, (2, 2))
            specs[f"up_ul{k}.nin"] = (4 * f, f, (1, 1))
            specs[f"up_ul{k}.c2"] = (2 * f, 2 * f, (2, 2))
        if r > 0:
            specs[f"upsample{r}.u"] = (f, 4 * f, (1, 1))
            specs[f"upsample{r}.ul"] = (f, 4 * f, (1, 1))
    specs["out"] = (f, num_params(cfg.channels, cfg.mixtures), (1, 1))
    return specs


class FloatOps(pixelcnn.FloatOps):
    specs = staticmethod(layer_specs)


class ExactOps(pixelcnn.ExactOps):
    specs = staticmethod(layer_specs)


def upsample(ops, name: str, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """2x up-sampling: (B, F, h, w) -> (B, F, height, width), height <= 2h, width <= 2w.

    Output (p, q) = channel block (p % 2, q % 2) of a 1x1 convolution at (p // 2, q // 2)."""
    return F.pixel_shuffle(ops.conv(name, x), 2)[:, :, :height, :width]


def forward(ops, x: torch.Tensor) -> torch.Tensor:
    """Whole-tile pass: embedded input (B, C+1, H, W) -> mixture parameters (B, P, H, W)."""
    cfg = ops.cfg
    u = down_shift(ops.conv("u_in", F.pad(x, PAD_DOWN_2x3)))
    ul = ops.add(down_shift(ops.conv("ul_in_a", F.pad(x, PAD_DOWN_1x3))),
                 right_shift(ops.conv("ul_in_b", F.pad(x, PAD_DOWNRIGHT_2x1))))
    skips_u, skips_ul, sizes = {}, {}, []
    for r in range(cfg.resolutions):
        if r > 0:
            u = ops.conv(f"down{r}.u", F.pad(u, PAD_DOWN_2x3), stride=2)
            ul = ops.conv(f"down{r}.ul", F.pad(ul, PAD_DOWNRIGHT_2x2), stride=2)
        sizes.append(tuple(u.shape[-2:]))
        for k in _blocks_of(cfg, r):
            u = _resblock(ops, u, f"u{k}", PAD_DOWN_2x3)
            ul = _resblock(ops, ul, f"ul{k}", PAD_DOWNRIGHT_2x2, aux=u)
            skips_u[k], skips_ul[k] = u, ul
    for r in reversed(range(cfg.resolutions)):
        if r < cfg.resolutions - 1:
            u = upsample(ops, f"upsample{r + 1}.u", u, *sizes[r])
            ul = upsample(ops, f"upsample{r + 1}.ul", ul, *sizes[r])
        for k in reversed(_blocks_of(cfg, r)):
            u = _resblock(ops, u, f"up_u{k}", PAD_DOWN_2x3, aux=skips_u[k])
            ul = _resblock(ops, ul, f"up_ul{k}", PAD_DOWNRIGHT_2x2, aux=torch.cat([u, skips_ul[k]], 1))
    return ops.conv("out", ops.elu(ul))


class MultiResPixelCNN(pixelcnn.PixelCNN):
    """The trainable float model: ``model(pixels, inside) -> params`` (see :func:`forward`)."""

    ops_class = FloatOps

    def network(self, x: torch.Tensor) -> torch.Tensor:
        return forward(self.ops, x)


Config, Model, convert = MultiResConfig, MultiResPixelCNN, pixelcnn.convert


def _shuffled_row(up: torch.Tensor, parity: int, width: int) -> torch.Tensor:
    """Row ``2a + parity`` of the pixel shuffle of a coarse row ``up`` (B, 4F, 1, w) -> (B, F, 1, width)."""
    b, c4, _, w = up.shape
    rows = up.view(b, c4 // 4, 2, 2, w)[:, :, parity]  # (B, F, dj, w)
    return rows.permute(0, 1, 3, 2).reshape(b, c4 // 4, 1, 2 * w)[:, :, :, :width]


class CachedDecoder:
    """Pixel-at-a-time evaluation of :func:`forward` with the exact ops, for B tiles in lock-step.

    The same protocol as :class:`arcompress.pixelcnn.CachedDecoder`: per tile row ``i``
    :meth:`start_row`, then per column ``j`` :meth:`step` (mixture parameters (B, P) of pixel
    (i, j)) and :meth:`commit` (its embedded input (B, C+1)).

    Resolution r's position (a, b) is computed at the step (a * 2**r, b * 2**r): its ``u`` row at
    :meth:`start_row`, its ``ul`` position in :meth:`step`.  Caches per resolution: the previous
    row of each ``u`` convolution's input, the current and previous rows of each ``ul``
    convolution's input, and the up-sampling convolutions' output rows.
    """

    def __init__(self, ops: ExactOps, batch: int, height: int, width: int, device=None):
        self.ops, self.cfg = ops, ops.cfg
        self.B, self.H, self.W = batch, height, width
        self.device = device
        f, c1, R = self.cfg.filters, self.cfg.channels + 1, self.cfg.resolutions
        self.widths = [width]
        for _ in range(1, R):
            self.widths.append((self.widths[-1] + 1) // 2)
        self.x_rows = self._zeros(c1, 3, width + 2)  # input rows i-2, i-1, i, padded left/right by 1
        self.u_prev: dict[str, torch.Tensor] = {}  # u conv name -> previous row of its padded input
        self.ul_cache: dict[str, torch.Tensor] = {}  # ul conv name -> rows a-1, a of its input, left pad
        # final down-pass ul of resolution r (rows a-1, a, left pad 1): the input of down{r+1}.ul
        self.ul_final = [self._zeros(f, 2, w + 1) for w in self.widths]
        self.ul_layer_res: dict[str, int] = {}  # ul conv name -> its resolution (for row shifts)
        self.u_rows: dict[int, torch.Tensor] = {}  # down block k -> its u output row
        self.up_u_rows: dict[int, torch.Tensor] = {}  # up block k -> its u output row
        self.aux_rows: dict[int, torch.Tensor] = {}  # down block k -> nin(concat_elu(u)) row
        self.up_rows_u = [None] * R  # r -> upsample{r}.u output row of resolution r (B, 4F, 1, w_r)
        self.up_rows_ul = [self._zeros(4 * f, 1, w)[:, :, 0] for w in self.widths]  # (B, 4F, w_r)
        self.down_u = [None] * R  # r -> down{r}.u output row (from resolution r-1)
        self.ul_a_row = self._zeros(f, 1, width)
        self.row = -1

    def _zeros(self, *shape: int) -> torch.Tensor:
        return torch.zeros(self.B, *shape, dtype=torch.float64, device=self.device)

    def _active(self, i: int, j: int = 0) -> int:
        """Number of resolutions with a position at full-resolution (i, j)."""
        n = 1
        while n < self.cfg.resolutions and i % (1 << n) == 0 and j % (1 << n) == 0:
            n += 1
        return n

    # -- u stream: whole rows --------------------------------------------------------------
    def _u_row_conv(self, name: str, value: torch.Tensor, stride: int = 1, compute: bool = True):
        """Row conv of a down-shifted 2x3 layer: window = [previous row; this row] -> this row."""
        cur = F.pad(value, (1, 1, 0, 0))
        prev = self.u_prev.get(name)
        if prev is None:
            prev = torch.zeros_like(cur)
        self.u_prev[name] = cur
        return self.ops.conv(name, torch.cat([prev, cur], dim=2), stride) if compute else None

    def _u_block(self, prefix: str, u: torch.Tensor, aux: torch.Tensor | None) -> torch.Tensor:
        ops = self.ops
        h = self._u_row_conv(f"{prefix}.c1", ops.concat_elu(u))
        if aux is not None:
            h = ops.add(h, ops.conv(f"{prefix}.nin", ops.concat_elu(aux)))
        h = self._u_row_conv(f"{prefix}.c2", ops.concat_elu(h))
        a, b = h.chunk(2, dim=1)
        return ops.add(u, ops.gate(a, b))

    def start_row(self, i: int) -> None:
        ops, cfg, R = self.ops, self.cfg, self.cfg.resolutions
        self.row = i
        active = self._active(i)
        if i > 0:
            self.x_rows[:, :, :2] = self.x_rows[:, :, 1:].clone()
            self.x_rows[:, :, 2] = 0
            for name, c in self.ul_cache.items():
                if self.ul_layer_res[name] < active:
                    c[:, :, 0] = c[:, :, 1]
                    c[:, :, 1] = 0
            for r in range(active):
                self.ul_final[r][:, :, 0] = self.ul_final[r][:, :, 1]
                self.ul_final[r][:, :, 1] = 0
        zero_row = torch.zeros_like(self.ul_a_row)
        u = ops.conv("u_in", self.x_rows[:, :, 0:2]) if i > 0 else zero_row
        self.ul_a_row = ops.conv("ul_in_a", self.x_rows[:, :, 1:2]) if i > 0 else zero_row
        for r in range(active):  # down pass of every resolution with a row here
            if r > 0:
                u = self.down_u[r]
            for k in _blocks_of(cfg, r):
                u = self._u_block(f"u{k}", u, None)
                self.u_rows[k] = u
                self.aux_rows[k] = ops.conv(f"ul{k}.nin", ops.concat_elu(u))
            if r + 1 < R:
                self.down_u[r + 1] = self._u_row_conv(f"down{r + 1}.u", u, 2, compute=(i >> r) % 2 == 0)
        for r in reversed(range(active)):  # up pass
            if r < R - 1:
                u = _shuffled_row(self.up_rows_u[r + 1], (i >> r) % 2, self.widths[r])
            for k in reversed(_blocks_of(cfg, r)):
                u = self._u_block(f"up_u{k}", u, self.u_rows[k])
                self.up_u_rows[k] = u
            if r > 0:
                self.up_rows_u[r] = ops.conv(f"upsample{r}.u", u)

    # -- ul stream: one position per resolution ---------------------------------------------
    def _ul_conv(self, name: str, r: int, value: torch.Tensor, b: int) -> torch.Tensor:
        """Pixel conv of a down-right 2x2 layer at resolution r: store value at (a, b), read cols b-1..b."""
        cache = self.ul_cache.get(name)
        if cache is None:
            cache = self.ul_cache[name] = self._zeros(value.shape[1], 2, self.widths[r] + 1)
            self.ul_layer_res[name] = r
        cache[:, :, 1, b + 1] = value[:, :, 0, 0]
        return self.ops.conv(name, cache[:, :, :, b:b + 2])

    def _ul_block(self, prefix: str, r: int, ul: torch.Tensor, aux: torch.Tensor, b: int) -> torch.Tensor:
        ops = self.ops
        h = self._ul_conv(f"{prefix}.c1", r, ops.concat_elu(ul), b)
        h = ops.add(h, aux)
        h = self._ul_conv(f"{prefix}.c2", r, ops.concat_elu(h), b)
        a, g = h.chunk(2, dim=1)
        return ops.add(ul, ops.gate(a, g))

    def step(self, j: int) -> torch.Tensor:
        """Mixture parameters (B, P) of pixel (row, j); pixels left of j must be committed."""
        ops, cfg, R, i = self.ops, self.cfg, self.cfg.resolutions, self.row
        active = self._active(i, j)
        b_in = ops.conv("ul_in_b", self.x_rows[:, :, 1:3, j:j + 1]) if j > 0 else \
            torch.zeros_like(self.ul_a_row[:, :, :, :1])
        ul = ops.add(self.ul_a_row[:, :, :, j:j + 1], b_in)
        skips: dict[int, torch.Tensor] = {}
        for r in range(active):  # down pass
            b = j >> r
            if r > 0:
                ul = ops.conv(f"down{r}.ul", self.ul_final[r - 1][:, :, :, 2 * b:2 * b + 2])
            for k in _blocks_of(cfg, r):
                ul = self._ul_block(f"ul{k}", r, ul, self.aux_rows[k][:, :, :, b:b + 1], b)
                skips[k] = ul
            self.ul_final[r][:, :, 1, b + 1] = ul[:, :, 0, 0]
        for r in reversed(range(active)):  # up pass
            b = j >> r
            if r < R - 1:
                f = cfg.filters
                blk = ((i >> r) % 2) * 2 + b % 2
                ul = self.up_rows_ul[r + 1][:, :, b // 2].view(self.B, f, 4)[:, :, blk, None, None]
            for k in reversed(_blocks_of(cfg, r)):
                aux_in = torch.cat([self.up_u_rows[k][:, :, :, b:b + 1], skips[k]], dim=1)
                ul = self._ul_block(f"up_ul{k}", r, ul, ops.conv(f"up_ul{k}.nin", ops.concat_elu(aux_in)), b)
            if r > 0:
                self.up_rows_ul[r][:, :, b] = ops.conv(f"upsample{r}.ul", ul)[:, :, 0, 0]
        return ops.conv("out", ops.elu(ul))[:, :, 0, 0]

    def commit(self, j: int, embedded: torch.Tensor) -> None:
        """Store the embedded input (B, C+1) of pixel (row, j)."""
        self.x_rows[:, :, 2, j + 1] = embedded
