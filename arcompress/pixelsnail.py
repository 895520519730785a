"""PixelSNAIL (Chen et al. 2018) on the PixelCNN++ streams: causal convolutions plus masked
self-attention over every earlier pixel of the tile, in raster order.

The convolutional part is :mod:`arcompress.pixelcnn`'s (same layers, same wiring); after each
``ul`` block an attention layer lets every pixel read the whole past of its tile, not only the
convolutions' local window:

* queries from the block's output (the convolution stream) and the pixel's position;
* keys and values from the block's *input* together with the image itself (the embedded pixels,
  the paper's "background") and the position;
* position p attends to positions q < p (raster order), softmax over q·k / sqrt(key), and the
  result enters the stream through ``concat_elu`` and a 1x1 convolution.

Exactness: every projection is an exact 1x1 convolution of :mod:`arcompress.fixedpoint`; scores are
``q·k >> (ACT_BITS + log2 sqrt(key))`` computed on integers; the softmax subtracts the row's maximum
and reads the scheme's ``exp`` table (2**16 scale, at least 1); the output is
``floor((2 sum_q w_q v_q + Z) / 2Z)`` in int64 with ``Z = sum_q w_q``.  Every sum is an integer
below 2**52 (checked: at most MAX_POSITIONS positions), so the batched encoder (all positions at
once) and the cached decoder (one query against key/value caches) give the same bits.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from . import fixedpoint as fp
from . import pixelcnn
from .head import num_params

ARCH = "pixelsnail"
#: most positions (pixels of a tile) one attention may cover: keeps sum w*v below 2**52
MAX_POSITIONS = 1 << 20
#: position features are row / POS_SCALE and column / POS_SCALE (real units)
POS_SCALE = 32


@dataclass(frozen=True)
class PixelSNAILConfig:
    """Architecture: PixelCNN++'s fields plus the attention's key and value widths.

    key must be a power of 4 (so that 1/sqrt(key) is a power of two).
    """

    channels: int = 3
    filters: int = 48
    blocks: int = 3
    mixtures: int = 5
    dropout: float = 0.0
    key: int = 16
    value: int = 32

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "PixelSNAILConfig":
        unknown = set(d) - set(PixelSNAILConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        cfg = PixelSNAILConfig(**d)
        if not (1 <= cfg.channels <= 4 and 1 <= cfg.filters <= 512 and 0 <= cfg.blocks <= 32
                and 1 <= cfg.mixtures <= 32 and cfg.key in (1, 4, 16, 64, 256) and 1 <= cfg.value <= 512):
            raise ValueError(f"model config out of range: {d}")
        return cfg


def layer_specs(cfg: PixelSNAILConfig) -> dict[str, tuple[int, int, tuple[int, int]]]:
    """PixelCNN++'s layers plus, per block, the attention's q, k, v and output projections."""
    specs = pixelcnn.layer_specs(cfg)
    out = specs.pop("out")
    f, c_in = cfg.filters, cfg.channels + 1
    for i in range(cfg.blocks):
        specs[f"att{i}.q"] = (f + 2, cfg.key, (1, 1))
        specs[f"att{i}.k"] = (f + c_in + 2, cfg.key, (1, 1))
        specs[f"att{i}.v"] = (f + c_in + 2, cfg.value, (1, 1))
        specs[f"att{i}.o"] = (2 * cfg.value, f, (1, 1))
    specs["out"] = out
    assert out == (f, num_params(cfg.channels, cfg.mixtures), (1, 1))
    return specs


def causal_mask(n: int, device=None) -> torch.Tensor:
    """(n, n) bool: row p may read column q iff q < p."""
    return torch.ones(n, n, dtype=torch.bool, device=device).tril(-1)


def _grid(h: int, w: int, dtype: torch.dtype, device) -> torch.Tensor:
    """(1, 2, h, w): each pixel's row and column index."""
    i = torch.arange(h, dtype=dtype, device=device).view(h, 1).expand(h, w)
    j = torch.arange(w, dtype=dtype, device=device).view(1, w).expand(h, w)
    return torch.stack([i, j])[None]


class FloatOps(pixelcnn.FloatOps):
    specs = staticmethod(layer_specs)

    def positions(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """(1, 2, h, w): row / POS_SCALE and column / POS_SCALE."""
        return _grid(h, w, like.dtype, like.device) / POS_SCALE

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Masked softmax attention: q, k (B, key, H, W), v (B, value, H, W) -> (B, value, H, W).

        Mirrors the exact version: weights relative to the row maximum, floored at 2**-16."""
        b, dk, h, w = q.shape
        n = h * w
        s = q.flatten(2).transpose(1, 2) @ k.flatten(2) / math.sqrt(dk)  # (B, N, N)
        mask = causal_mask(n, q.device)
        s = s.masked_fill(~mask, -1e9)
        s = s - s.amax(dim=-1, keepdim=True).detach()
        wgt = torch.exp(s).clamp_min(2.0 ** -fp.MIX_BITS) * mask
        z = wgt.sum(-1, keepdim=True)
        out = (wgt @ v.flatten(2).transpose(1, 2)) / (z + (z == 0).to(z.dtype))
        return out.transpose(1, 2).reshape(b, -1, h, w)


class ExactOps(pixelcnn.ExactOps):
    specs = staticmethod(layer_specs)
    #: most score-matrix entries computed at once by the batched pass (bounds its memory)
    ATTEND_BLOCK = 1 << 22

    def __init__(self, cfg: PixelSNAILConfig, tensors: dict[str, torch.Tensor]):
        super().__init__(cfg, tensors)
        self.score_shift = fp.ACT_BITS + int(round(math.log2(math.sqrt(cfg.key))))
        self.exp_lo = -fp.EXP_RANGE * fp.ONE

    def positions(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """The same positions in fixed point: row and column times ONE / POS_SCALE (integers)."""
        return _grid(h, w, torch.float64, like.device) * (fp.ONE // POS_SCALE)

    def weights_from_scores(self, s: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Raw integer scores (..., N) and mask -> integer softmax weights (0 where masked)."""
        s = fp.rescale(s, self.score_shift).masked_fill(~mask, -float(1 << 50))
        d = s - s.amax(dim=-1, keepdim=True)
        return torch.where(mask, fp.lookup(self.tables["exp"], d, self.exp_lo), torch.zeros_like(d))

    @staticmethod
    def weighted_mean(wgt: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """floor((2 * wgt @ v + Z) / 2Z) in int64, Z = sum(wgt); 0 where Z = 0.  wgt (..., N), v (..., N, D)."""
        z = wgt.sum(-1, keepdim=True).to(torch.int64)
        num = (wgt @ v).to(torch.int64)
        den = 2 * z.clamp_min(1)
        return torch.div(2 * num + z, den, rounding_mode="floor").masked_fill(z == 0, 0).to(torch.float64)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, _, h, w = q.shape
        n = h * w
        if n > MAX_POSITIONS:
            raise ValueError(f"attention over {n} positions exceeds {MAX_POSITIONS}")
        qf, kf, vf = q.flatten(2).transpose(1, 2), k.flatten(2), v.flatten(2).transpose(1, 2)
        mask = causal_mask(n, q.device)
        out = torch.empty(b, n, v.shape[1], dtype=torch.float64, device=q.device)
        tiles = max(1, self.ATTEND_BLOCK // (n * n))  # whole tiles at once, or ...
        rows = n if tiles > 1 else max(1, self.ATTEND_BLOCK // n)  # ... blocks of query rows of one tile
        for s in range(0, b, tiles):
            for r in range(0, n, rows):
                e, f = s + tiles, r + rows
                wgt = self.weights_from_scores(qf[s:e, r:f] @ kf[s:e], mask[r:f])
                out[s:e, r:f] = self.weighted_mean(wgt, vf[s:e])
        return out.transpose(1, 2).reshape(b, -1, h, w)

    def attend_step(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """One query per tile against its cache: q (B, key), keys (B, n, key), values (B, n, value)
        -> (B, value); zeros when n = 0."""
        if keys.shape[1] == 0:
            return torch.zeros(values.shape[0], values.shape[2], dtype=torch.float64, device=values.device)
        s = (keys @ q.unsqueeze(2)).squeeze(2)  # (B, n)
        mask = torch.ones_like(s, dtype=torch.bool)
        wgt = self.weights_from_scores(s, mask)
        return self.weighted_mean(wgt.unsqueeze(1), values).squeeze(1)


def _kv_input(ul_in: torch.Tensor, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    return torch.cat([ul_in, x, pos.expand(x.shape[0], -1, -1, -1)], dim=1)


def attention(ops, k: int, ul_in: torch.Tensor, ul: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The attention layer after ``ul`` block k (whole tiles): returns the new ``ul``."""
    pos = ops.positions(x.shape[2], x.shape[3], x)
    q = ops.conv(f"att{k}.q", torch.cat([ul, pos.expand(x.shape[0], -1, -1, -1)], dim=1))
    kv = _kv_input(ul_in, x, pos)
    a = ops.attend(q, ops.conv(f"att{k}.k", kv), ops.conv(f"att{k}.v", kv))
    return ops.add(ul, ops.conv(f"att{k}.o", ops.concat_elu(a)))


def forward(ops, x: torch.Tensor) -> torch.Tensor:
    """Whole-tile pass: embedded input (B, C+1, H, W) -> mixture parameters (B, P, H, W)."""
    return pixelcnn.forward(ops, x, after_block=attention)


class PixelSNAIL(pixelcnn.PixelCNN):
    """The trainable float model: ``model(pixels, inside) -> params``.

    The attention outputs' projections start at zero, so a new model computes what its
    convolutional part computes (and one started from a PixelCNN++ begins at that model's NLL)."""

    ops_class = FloatOps

    def __init__(self, cfg: PixelSNAILConfig):
        super().__init__(cfg)
        with torch.no_grad():
            for i in range(cfg.blocks):
                conv = self.ops.convs[f"att{i}_o"]
                conv.weight.zero_()
                conv.bias.zero_()

    def network(self, x: torch.Tensor) -> torch.Tensor:
        return forward(self.ops, x)


Config, Model, convert = PixelSNAILConfig, PixelSNAIL, pixelcnn.convert


class CachedDecoder(pixelcnn.CachedDecoder):
    """PixelCNN++'s cached decoder plus, per attention layer, key and value caches of every
    committed pixel of the tile: a step costs O(layers + position)."""

    def __init__(self, ops: ExactOps, batch: int, height: int, width: int, device=None):
        super().__init__(ops, batch, height, width, device)
        cfg, n = ops.cfg, height * width
        if n > MAX_POSITIONS:
            raise ValueError(f"attention over {n} positions exceeds {MAX_POSITIONS}")
        z = lambda *shape: torch.zeros(*shape, dtype=torch.float64, device=device)  # noqa: E731
        self.keys = [z(batch, n, cfg.key) for _ in range(cfg.blocks)]
        self.values = [z(batch, n, cfg.value) for _ in range(cfg.blocks)]
        self.block_inputs: list[torch.Tensor | None] = [None] * cfg.blocks  # ul_in of the current pixel
        self.pos = ops.positions(height, width, self.x_rows)  # (1, 2, H, W)

    def _pos(self, j: int) -> torch.Tensor:
        return self.pos[:, :, self.row:self.row + 1, j:j + 1].expand(self.B, -1, -1, -1)

    def after_block(self, k: int, ul_in: torch.Tensor, ul: torch.Tensor, j: int) -> torch.Tensor:
        ops = self.ops
        self.block_inputs[k] = ul_in
        p = self.row * self.W + j
        q = ops.conv(f"att{k}.q", torch.cat([ul, self._pos(j)], dim=1))[:, :, 0, 0]
        a = ops.attend_step(q, self.keys[k][:, :p], self.values[k][:, :p])
        return ops.add(ul, ops.conv(f"att{k}.o", ops.concat_elu(a[:, :, None, None])))

    def commit(self, j: int, embedded: torch.Tensor) -> None:
        super().commit(j, embedded)
        p = self.row * self.W + j
        for k, ul_in in enumerate(self.block_inputs):
            kv = torch.cat([ul_in, embedded[:, :, None, None], self._pos(j)], dim=1)
            self.keys[k][:, p] = self.ops.conv(f"att{k}.k", kv)[:, :, 0, 0]
            self.values[k][:, p] = self.ops.conv(f"att{k}.v", kv)[:, :, 0, 0]
