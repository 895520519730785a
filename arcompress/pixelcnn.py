"""PixelCNN++ (Salimans et al. 2017), single-resolution, with one wiring for every use.

The network is written once (:func:`forward`) against an *ops* object: :class:`FloatOps`
(float32, trainable, used by ``arcompress train``) or :class:`ExactOps` (fixed-point integers in
float64, used by the encoder and decoder).  :class:`CachedDecoder` evaluates the same layers
with the same ops one pixel at a time from per-layer row caches (Ramachandran et al. 2017): the
down-shifted stream is computed a row at a time, the down-right stream a pixel at a time, so a
step costs O(layers) whatever the position.

Streams (H x W image, ``F`` filters, ``N`` gated resnet blocks per stream):

* ``u``  -- down-shifted 2x3 convolutions: u[i, j] sees rows < i.
* ``ul`` -- down-right-shifted 2x2 convolutions plus ``u`` through a 1x1 ("nin") input:
  ul[i, j] sees rows < i and row i left of j.

The output is a 1x1 convolution of ``elu(ul)`` giving the discretized logistic mixture
parameters of :mod:`arcompress.head`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import fixedpoint as fp
from .convstate import NamedConvs, exact_convs
from .head import num_params


@dataclass(frozen=True)
class PixelCNNConfig:
    """Architecture of a PixelCNN++ model.

    channels: sub-pixels per pixel coded jointly (1 = grey, 3 = RGB).
    filters: feature maps per stream.  blocks: gated resnet blocks per stream.
    mixtures: logistic mixture components.  dropout: training only.
    """

    channels: int = 3
    filters: int = 48
    blocks: int = 4
    mixtures: int = 5
    dropout: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "PixelCNNConfig":
        fields = {"channels", "filters", "blocks", "mixtures", "dropout"}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        cfg = PixelCNNConfig(**d)
        if not (1 <= cfg.channels <= 4 and 1 <= cfg.filters <= 512 and 0 <= cfg.blocks <= 32
                and 1 <= cfg.mixtures <= 32):
            raise ValueError(f"model config out of range: {d}")
        return cfg


# Layer table: name -> (in-channel multiple, out-channel multiple, kernel (h, w)).
def layer_specs(cfg: PixelCNNConfig) -> dict[str, tuple[int, int, tuple[int, int]]]:
    f, c_in = cfg.filters, cfg.channels + 1
    specs: dict[str, tuple[int, int, tuple[int, int]]] = {
        "u_in": (c_in, f, (2, 3)),
        "ul_in_a": (c_in, f, (1, 3)),
        "ul_in_b": (c_in, f, (2, 1)),
    }
    for i in range(cfg.blocks):
        specs[f"u{i}.c1"] = (2 * f, f, (2, 3))
        specs[f"u{i}.c2"] = (2 * f, 2 * f, (2, 3))
        specs[f"ul{i}.c1"] = (2 * f, f, (2, 2))
        specs[f"ul{i}.nin"] = (2 * f, f, (1, 1))
        specs[f"ul{i}.c2"] = (2 * f, 2 * f, (2, 2))
    specs["out"] = (f, num_params(cfg.channels, cfg.mixtures), (1, 1))
    return specs


# Zero padding (left, right, top, bottom) that makes each kernel causal.
PAD_DOWN_2x3 = (1, 1, 1, 0)
PAD_DOWN_1x3 = (1, 1, 0, 0)
PAD_DOWNRIGHT_2x2 = (1, 0, 1, 0)
PAD_DOWNRIGHT_2x1 = (0, 0, 1, 0)


def down_shift(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


def right_shift(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]


class FloatOps(nn.Module):
    """Trainable float32 layers; activations clamped to the exact scheme's range."""

    specs = staticmethod(layer_specs)  # the layer table of this architecture

    def __init__(self, cfg: PixelCNNConfig):
        super().__init__()
        self.cfg = cfg
        self.convs = nn.ModuleDict()
        for name, (cin, cout, k) in self.specs(cfg).items():
            conv = nn.Conv2d(cin, cout, k)
            self.convs[name.replace(".", "_")] = conv
        self.limit = fp.ACT_LIMIT / fp.ONE

    def conv(self, name: str, x: torch.Tensor, stride: int = 1) -> torch.Tensor:
        c = self.convs[name.replace(".", "_")]
        y = c(x) if stride == 1 else F.conv2d(x, c.weight, c.bias, stride=stride)
        return y.clamp(-self.limit, self.limit)

    def concat_elu(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(torch.cat([x, -x], dim=1))

    def elu(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(x)

    def gate(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * torch.sigmoid(b)

    def add(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x + y).clamp(-self.limit, self.limit)

    def dropout(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.cfg.dropout, self.training)

    def embed(self, pixels: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        """uint8 pixels (B, C, H, W), inside mask (B, 1, H, W) -> network input (B, C+1, H, W)."""
        x = pixels.float() / 127.5 - 1.0
        return torch.cat([x * inside, inside.float()], dim=1)


class ExactOps:
    """Fixed-point integer layers (values in float64), built from an exact model's tensors."""

    specs = staticmethod(layer_specs)

    def __init__(self, cfg: PixelCNNConfig, tensors: dict[str, torch.Tensor]):
        self.cfg = cfg
        self.tables = {k: tensors[f"table.{k}"].to(torch.int64) for k in fp.TABLE_SIZES}
        fp.validate_tables(self.tables)
        self.weights: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.matrices: dict[str, torch.Tensor] = {}
        self.scales: dict[str, torch.Tensor] = {}
        for name, (cin, cout, k) in self.specs(cfg).items():
            wi, sh, bi = tensors[f"{name}.weight"], tensors[f"{name}.shift"], tensors[f"{name}.bias"]
            if wi.shape != (cout, cin, *k) or sh.shape != (cout,) or bi.shape != (cout,):
                raise ValueError(f"model file: layer {name} has the wrong shape")
            fp.check_conv_bound(wi.to(torch.int64), bi.to(torch.int64), name)
            self.weights[name] = (wi.double(), bi.double(), sh.double())
            # the same weights as a (I*kh*kw, O) matrix, for windows exactly the kernel's size
            self.matrices[name] = wi.double().reshape(cout, -1).t().contiguous()
            self.scales[name] = torch.exp2(-sh.double())  # rescale's factors, computed once
        self.conv_impl = F.conv2d
        self.luts = {k: self.tables[k].double() for k in ("elu", "sigmoid")}  # float64 copies: no casts
        self.elu_lo = -fp.ELU_RANGE * fp.ONE
        self.sig_lo = -fp.SIGMOID_RANGE * fp.ONE

    def to(self, device: torch.device) -> "ExactOps":
        self.tables = {k: v.to(device) for k, v in self.tables.items()}
        self.weights = {k: tuple(t.to(device) for t in v) for k, v in self.weights.items()}
        self.matrices = {k: v.to(device) for k, v in self.matrices.items()}
        self.scales = {k: v.to(device) for k, v in self.scales.items()}
        self.luts = {k: v.to(device) for k, v in self.luts.items()}
        return self

    def conv(self, name: str, x: torch.Tensor, stride: int = 1) -> torch.Tensor:
        """Exact convolution of fixed-point ``x`` (N, I, h, w) -> (N, O, h', w'), no padding."""
        w, b, s = self.weights[name]
        kh, kw = w.shape[-2:]
        if x.shape[-2] == kh:  # a single output row (the cached decoder): im2col + matrix product
            n, c, _, width = x.shape
            # fp.rescale of the exact sums (any order of an integer sum below 2**53 gives the same
            # float64), with the layer's 2**-shift computed once
            if width == kw:  # a single window (the per-pixel step): already in (I, kh, kw) order
                acc = torch.addmm(b, x.reshape(n, -1), self.matrices[name])
                acc.mul_(self.scales[name]).add_(0.5).floor_()
                return fp.clamp_act(acc).view(n, -1, 1, 1)
            cols = x.unfold(3, kw, stride).permute(0, 3, 1, 2, 4).reshape(-1, c * kh * kw)
            acc = torch.addmm(b, cols, self.matrices[name])
            acc.mul_(self.scales[name]).add_(0.5).floor_()
            return fp.clamp_act(acc).view(n, -1, w.shape[0]).permute(0, 2, 1).unsqueeze(2)
        if stride == 1:
            return fp.exact_conv2d(x, w, b, s, conv=self.conv_impl)
        return fp.exact_conv2d(x, w, b, s, conv=lambda x, w: self.conv_impl(x, w, stride=stride))

    def elu(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, x, fp.lookup(self.luts["elu"], x, self.elu_lo))

    def concat_elu(self, x: torch.Tensor) -> torch.Tensor:
        return self.elu(torch.cat([x, -x], dim=1))

    def gate(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return fp.rescale(a * fp.lookup(self.luts["sigmoid"], b, self.sig_lo), fp.ACT_BITS)

    def add(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return fp.clamp_act(x + y)

    def dropout(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def embed(self, pixels: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        x = fp.fixed_from_pixels(pixels) * inside
        return torch.cat([x, inside.to(torch.float64) * fp.ONE], dim=1)


def _resblock(ops, x: torch.Tensor, prefix: str, pad: tuple[int, int, int, int],
              aux: torch.Tensor | None = None) -> torch.Tensor:
    """Gated resnet block: x + a * sigmoid(b), [a, b] = conv2(concat_elu(conv1(concat_elu(x)) [+ nin(aux)]))."""
    h = ops.conv(f"{prefix}.c1", F.pad(ops.concat_elu(x), pad))
    if aux is not None:
        h = ops.add(h, ops.conv(f"{prefix}.nin", ops.concat_elu(aux)))
    h = ops.dropout(ops.concat_elu(h))
    h = ops.conv(f"{prefix}.c2", F.pad(h, pad))
    a, b = h.chunk(2, dim=1)
    return ops.add(x, ops.gate(a, b))


def forward(ops, x: torch.Tensor, after_block=None) -> torch.Tensor:
    """Whole-image pass: embedded input (B, C+1, H, W) -> mixture parameters (B, P, H, W).

    ``after_block(ops, k, ul_in, ul, x) -> ul``, if given, runs after the k-th ``ul`` block
    (``ul_in``: that block's input); PixelSNAIL puts its attention there.
    """
    cfg = ops.cfg
    u = down_shift(ops.conv("u_in", F.pad(x, PAD_DOWN_2x3)))
    ul = ops.add(down_shift(ops.conv("ul_in_a", F.pad(x, PAD_DOWN_1x3))),
                 right_shift(ops.conv("ul_in_b", F.pad(x, PAD_DOWNRIGHT_2x1))))
    for i in range(cfg.blocks):
        u = _resblock(ops, u, f"u{i}", PAD_DOWN_2x3)
        ul_in = ul
        ul = _resblock(ops, ul, f"ul{i}", PAD_DOWNRIGHT_2x2, aux=u)
        if after_block is not None:
            ul = after_block(ops, i, ul_in, ul, x)
    return ops.conv("out", ops.elu(ul))


class PixelCNN(NamedConvs, nn.Module):
    """The trainable float model: ``model(pixels, inside) -> params`` (see :func:`forward`)."""

    ops_class = FloatOps

    def __init__(self, cfg: PixelCNNConfig):
        super().__init__()
        self.cfg = cfg
        self.ops = self.ops_class(cfg)

    def network(self, x: torch.Tensor) -> torch.Tensor:
        return forward(self.ops, x)

    def forward(self, pixels: torch.Tensor, inside: torch.Tensor | None = None) -> torch.Tensor:
        if inside is None:
            inside = torch.ones_like(pixels[:, :1], dtype=torch.float32)
        return self.network(self.ops.embed(pixels, inside))


ARCH = "pixelcnn++"
Config, Model = PixelCNNConfig, PixelCNN


def convert(model: PixelCNN) -> dict[str, torch.Tensor]:
    """Float model -> exact model tensors (integer weights, shifts, biases and lookup tables)."""
    out = exact_convs(model)
    for k, v in fp.build_tables().items():
        out[f"table.{k}"] = v.to(torch.int32)  # every entry is below 2**28
    return out


class CachedDecoder:
    """Pixel-at-a-time evaluation of :func:`forward` with the exact ops, for B tiles in lock-step.

    Usage per tile row ``i``: :meth:`start_row` (computes the ``u`` stream and the row-only part
    of the ``ul`` input for row ``i`` from the cached rows above), then for each column ``j``:
    :meth:`step` (returns the mixture parameters (B, P) of pixel (i, j)) and, once its
    sub-pixels are known, :meth:`commit` (stores them).  Shapes: B tiles of H x W pixels.
    """

    def __init__(self, ops: ExactOps, batch: int, height: int, width: int, device=None):
        self.ops, self.cfg = ops, ops.cfg
        self.B, self.H, self.W = batch, height, width
        f, c1 = self.cfg.filters, self.cfg.channels + 1
        z = lambda *shape: torch.zeros(*shape, dtype=torch.float64, device=device)  # noqa: E731
        # embedded input rows i-2, i-1 (for u_in) and rows i-1, i (for ul_in_b), 1 column of left pad
        self.x_rows = z(batch, c1, 3, width + 2)  # rows i-2, i-1, i; cols padded by 1 on each side
        n = self.cfg.blocks
        # u stream: previous row of each conv input (after concat_elu), padded left/right by 1
        self.u_prev = [z(batch, 2 * f, 1, width + 2) for _ in range(2 * n)]
        # ul stream: rows i-1, i of each conv input (after concat_elu), padded left by 1
        self.ul_cache = [z(batch, 2 * f, 2, width + 1) for _ in range(2 * n)]
        self.aux_row: list[torch.Tensor] = []  # nin(concat_elu(u_k)) of row i: (B, F, 1, W), k < n
        self.ul_a_row = z(batch, f, 1, width)
        self.row = -1

    def start_row(self, i: int) -> None:
        ops, n = self.ops, self.cfg.blocks
        self.row = i
        if i > 0:  # shift the input rows up: row i-1 becomes the newest complete row
            self.x_rows[:, :, :2] = self.x_rows[:, :, 1:].clone()
            self.x_rows[:, :, 2] = 0
            for c in self.ul_cache:
                c[:, :, 0] = c[:, :, 1]
                c[:, :, 1] = 0
        # u_in at row i = conv over input rows i-2, i-1 (down-shifted); row 0 is all zero
        u = ops.conv("u_in", self.x_rows[:, :, 0:2]) if i > 0 else \
            torch.zeros_like(self.ul_a_row)
        self.ul_a_row = ops.conv("ul_in_a", self.x_rows[:, :, 1:2]) if i > 0 else \
            torch.zeros_like(self.ul_a_row)
        # the ul blocks' auxiliary input nin(concat_elu(u)) depends on row i only: one row conv
        self.aux_row = []
        for k in range(n):
            u = self._u_block(k, u)
            self.aux_row.append(ops.conv(f"ul{k}.nin", ops.concat_elu(u)))

    def _u_row_conv(self, cache_idx: int, name: str, value: torch.Tensor) -> torch.Tensor:
        """Row conv of a down-shifted 2x3 layer: window = [cached row i-1; row i] -> row i."""
        prev = self.u_prev[cache_idx]
        cur = F.pad(value, (1, 1, 0, 0))
        out = self.ops.conv(name, torch.cat([prev, cur], dim=2))
        self.u_prev[cache_idx] = cur
        return out

    def _u_block(self, k: int, u: torch.Tensor) -> torch.Tensor:
        ops = self.ops
        h = self._u_row_conv(2 * k, f"u{k}.c1", ops.concat_elu(u))
        h = self._u_row_conv(2 * k + 1, f"u{k}.c2", ops.concat_elu(h))
        a, b = h.chunk(2, dim=1)
        return ops.add(u, ops.gate(a, b))

    def _ul_conv(self, cache_idx: int, name: str, value: torch.Tensor, j: int) -> torch.Tensor:
        """Pixel conv of a down-right 2x2 layer: store value at (i, j), read window cols j-1..j."""
        cache = self.ul_cache[cache_idx]
        cache[:, :, 1, j + 1] = value[:, :, 0, 0]
        return self.ops.conv(name, cache[:, :, :, j:j + 2])

    def step(self, j: int) -> torch.Tensor:
        """Mixture parameters (B, P) of pixel (row, j); pixels left of j must be committed."""
        ops = self.ops
        # ul_in = down_shift(conv1x3)(i, j) + right_shift(conv2x1)(i, j): x[i-1..i, j-1]
        b_in = ops.conv("ul_in_b", self.x_rows[:, :, 1:3, j:j + 1]) if j > 0 else \
            torch.zeros_like(self.ul_a_row[:, :, :, :1])
        ul = ops.add(self.ul_a_row[:, :, :, j:j + 1], b_in)
        for k in range(self.cfg.blocks):
            h = self._ul_conv(2 * k, f"ul{k}.c1", ops.concat_elu(ul), j)
            h = ops.add(h, self.aux_row[k][:, :, :, j:j + 1])
            h = self._ul_conv(2 * k + 1, f"ul{k}.c2", ops.concat_elu(h), j)
            a, b = h.chunk(2, dim=1)
            ul = self.after_block(k, ul, ops.add(ul, ops.gate(a, b)), j)
        return ops.conv("out", ops.elu(ul))[:, :, 0, 0]

    def after_block(self, k: int, ul_in: torch.Tensor, ul: torch.Tensor, j: int) -> torch.Tensor:
        """The step's counterpart of ``forward``'s ``after_block`` (B, F, 1, 1); none here."""
        return ul

    def commit(self, j: int, embedded: torch.Tensor) -> None:
        """Store the embedded input (B, C+1) of pixel (row, j)."""
        self.x_rows[:, :, 2, j + 1] = embedded
