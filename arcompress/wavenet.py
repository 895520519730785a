"""WaveNet (van den Oord et al. 2016) for lossless audio, with one wiring for every use.

As for PixelCNN++, the network is written once (:func:`forward`) against an *ops* object:
:class:`FloatOps` (float32, trainable) or :class:`ExactOps` (fixed-point integers carried in
float64, used by the encoder and the decoder).  :class:`CachedDecoder` evaluates the same
layers one time step at a time from a queue per layer holding its last ``dilation`` inputs
(Fast WaveNet, Paine et al. 2016), so a step costs O(layers) whatever the receptive field.

Every *stream* is one audio channel of one chunk.  The input at time ``t`` (``IN_CHANNELS``
rows, all from times before ``t``, so the network is causal by construction):

0. ``s[t-1] / 1024``: the previous sample (int16 units) at full precision (its fixed-point
   value *is* the integer sample)
1. ``mulaw(s[t-1])`` in [-1, 1]: a companded view (mu-law is only an input feature here)
2. ``e[t-1] / 1024`` and 3. ``mulaw(e[t-1])``: the previous prediction error of the chunk's
   linear predictor (audio_head), which tells the network how loud the unpredictable part is
4. ``r[t-1] / 1024`` and 5. ``mulaw(r[t-1])``: the reference channel (the channel before this
   one in a multi-channel file; zero for the first channel)
6. 1 if there is a reference channel, 7. the sample-rate feature (:func:`rate_feature`),
8. 1 if ``t-1`` lies inside the chunk (the chunk's first sample has no past).

Layers: a causal 2-tap input convolution, then ``layers`` residual blocks with dilations
``1, 2, 4, ..., 2**(cycle-1)`` repeated: ``z = tanh(a) * sigmoid(b)`` with ``[a, b]`` a
dilated causal 2-tap convolution, and one 1x1 convolution giving the residual (added to the
block input) and the skip output (summed over blocks).  The head is
``out2(elu(out1(elu(skips))))``: ``4 * mixtures`` parameters per time step, read by
:mod:`arcompress.audio_head`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import fixedpoint as fp
from .convstate import NamedConvs, exact_convs

IN_CHANNELS = 9
#: mu of the mu-law input feature
MU = 255.0


@dataclass(frozen=True)
class WaveNetConfig:
    """Architecture of a WaveNet model.

    residual: channels of the residual stream.  skip: channels of the skip sum and head.
    layers: residual blocks; dilations cycle through 1, 2, ..., 2**(cycle-1).
    mixtures: logistic mixture components.  lpc: order of the per-chunk linear predictor
    (audio_head; its taps are chosen by the encoder and stored in the file).  lpc_cross: taps
    of that predictor on the reference channel's present and past samples, for every channel
    after the first (0: none, as in the first audio models).
    """

    residual: int = 32
    skip: int = 64
    layers: int = 10
    cycle: int = 10
    mixtures: int = 4
    lpc: int = 16
    lpc_cross: int = 0

    def to_dict(self) -> dict:
        """The config as stored in model files and hashed into the model's digest: ``lpc_cross``
        (added later) is left out when 0, so the earlier models keep their digests."""
        d = asdict(self)
        if not d["lpc_cross"]:
            del d["lpc_cross"]
        return d

    @staticmethod
    def from_dict(d: dict) -> "WaveNetConfig":
        unknown = set(d) - set(WaveNetConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        cfg = WaveNetConfig(**d)
        if not (1 <= cfg.residual <= 512 and 1 <= cfg.skip <= 1024 and 1 <= cfg.layers <= 64
                and 1 <= cfg.cycle <= 16 and 1 <= cfg.mixtures <= 16 and 1 <= cfg.lpc <= 64
                and 0 <= cfg.lpc_cross <= 32):
            raise ValueError(f"model config out of range: {d}")
        return cfg

    def dilations(self) -> list[int]:
        return [1 << (i % self.cycle) for i in range(self.layers)]

    def receptive_field(self) -> int:
        """Samples of the past that one output sees."""
        return 1 + sum(self.dilations()) + 1


def layer_specs(cfg: WaveNetConfig) -> dict[str, tuple[int, int, int]]:
    """name -> (in channels, out channels, taps)."""
    r, s = cfg.residual, cfg.skip
    specs = {"in": (IN_CHANNELS, r, 2)}
    for i in range(cfg.layers):
        specs[f"l{i}.dil"] = (r, 2 * r, 2)
        specs[f"l{i}.out"] = (r, r + s, 1)
    specs["out1"] = (s, s, 1)
    specs["out2"] = (s, 4 * cfg.mixtures, 1)
    return specs


# ----------------------------------------------------------------------------- input features

def rate_feature(rate: int) -> int:
    """A piecewise-linear log2(rate / 16384) in fixed point, from integers only (machine-independent)."""
    e = rate.bit_length() - 1
    return (e - 14) * fp.ONE + ((rate - (1 << e)) << fp.ACT_BITS) // (1 << e)


def mulaw_table() -> torch.Tensor:
    """Fixed-point mu-law of every int16 sample value, indexed by ``s + 32768`` (int64, 65536)."""
    s = np.arange(-32768, 32768, dtype=np.float64) / 32768.0
    y = np.sign(s) * np.log1p(MU * np.abs(s)) / np.log1p(MU)
    return torch.from_numpy(np.floor(y * fp.ONE + 0.5).astype(np.int64))


def float_mulaw(s: torch.Tensor) -> torch.Tensor:
    x = s / 32768.0
    return torch.sign(x) * torch.log1p(MU * x.abs()) / np.log1p(MU)


def clamp16(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(-32768, 32767)


def embed_fixed(samples: torch.Tensor, resid: torch.Tensor, ref: torch.Tensor, has_ref: torch.Tensor,
                rate: int, mulaw: torch.Tensor) -> torch.Tensor:
    """Network input (N, IN_CHANNELS, T) in fixed point (float64) for streams (N, T).

    Column t holds features of time t-1 (shifted by one: causal); column 0 has no past.
    ``resid``: the linear predictor's errors (N, T); ``ref``: the reference channel's samples
    (zeros where ``has_ref`` (N,) is false).  All int64.
    """
    n, t = samples.shape
    prev = F.pad(samples.to(torch.int64), (1, 0))[:, :t]
    eprev = clamp16(F.pad(resid.to(torch.int64), (1, 0))[:, :t])
    rprev = F.pad(ref.to(torch.int64), (1, 0))[:, :t]
    return torch.stack([prev, mulaw[prev + 32768], eprev, mulaw[eprev + 32768], rprev, mulaw[rprev + 32768],
                        (has_ref.to(torch.int64) * fp.ONE).view(n, 1).expand(n, t),
                        torch.full_like(prev, rate_feature(rate)), _valid(n, t, prev.device) * fp.ONE],
                       1).to(torch.float64)


def embed_step(prev: torch.Tensor, eprev: torch.Tensor, rprev: torch.Tensor, has_ref: torch.Tensor, rate: int,
               t: int, mulaw: torch.Tensor) -> torch.Tensor:
    """Column ``t`` of :func:`embed_fixed` from the previous samples / errors (N,) -> (N, IN_CHANNELS)."""
    n = prev.shape[0]
    eprev = clamp16(eprev)
    col = [prev, mulaw[prev + 32768], eprev, mulaw[eprev + 32768], rprev, mulaw[rprev + 32768],
           has_ref.to(torch.int64) * fp.ONE, torch.full_like(prev, rate_feature(rate)),
           torch.full_like(prev, fp.ONE if t > 0 else 0)]
    return torch.stack(col, 1).to(torch.float64).view(n, IN_CHANNELS)


def _valid(n: int, t: int, device) -> torch.Tensor:
    v = torch.ones(n, t, dtype=torch.int64, device=device)
    v[:, 0] = 0
    return v


def embed_float(samples: torch.Tensor, resid: torch.Tensor, ref: torch.Tensor, has_ref: torch.Tensor,
                rate: torch.Tensor) -> torch.Tensor:
    """The float twin of :func:`embed_fixed`: (N, T) -> (N, IN_CHANNELS, T); ``rate``: (N,) features."""
    n, t = samples.shape
    prev = F.pad(samples.float(), (1, 0))[:, :t]
    eprev = clamp16(F.pad(resid.float(), (1, 0))[:, :t])
    rprev = F.pad(ref.float(), (1, 0))[:, :t]
    return torch.stack([prev / fp.ONE, float_mulaw(prev), eprev / fp.ONE, float_mulaw(eprev),
                        rprev / fp.ONE, float_mulaw(rprev), has_ref.float().view(n, 1).expand(n, t),
                        (rate.float() / fp.ONE).view(n, 1).expand(n, t), _valid(n, t, prev.device).float()], 1)


# ----------------------------------------------------------------------------- ops

class FloatOps(nn.Module):
    """Trainable float32 layers; activations clamped to the exact scheme's range."""

    specs = staticmethod(layer_specs)

    def __init__(self, cfg: WaveNetConfig):
        super().__init__()
        self.cfg = cfg
        self.convs = nn.ModuleDict({n.replace(".", "_"): nn.Conv1d(i, o, k)
                                    for n, (i, o, k) in layer_specs(cfg).items()})
        self.limit = fp.ACT_LIMIT / fp.ONE

    def conv(self, name: str, x: torch.Tensor, dilation: int = 1) -> torch.Tensor:
        conv = self.convs[name.replace(".", "_")]
        return F.conv1d(x, conv.weight, conv.bias, dilation=dilation).clamp(-self.limit, self.limit)

    def gate(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.tanh(a) * torch.sigmoid(b)

    def elu(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(x)

    def add(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x + y).clamp(-self.limit, self.limit)


class ExactOps:
    """Fixed-point integer layers (values in float64), built from an exact model's tensors."""

    def __init__(self, cfg: WaveNetConfig, tensors: dict[str, torch.Tensor]):
        self.cfg = cfg
        from . import audio_head
        names = [*fp.TABLE_SIZES, *audio_head.AUDIO_TABLE_SIZES, "mulaw"]
        self.tables = {k: tensors[f"table.{k}"].to(torch.int64) for k in names}
        fp.validate_tables(self.tables)
        audio_head.validate_tables(self.tables)
        if self.tables["mulaw"].shape != (65536,) or int(self.tables["mulaw"].abs().max()) > fp.ONE:
            raise ValueError("model file: the mu-law table is out of range")
        self.weights, self.matrices = {}, {}
        for name, (cin, cout, k) in layer_specs(cfg).items():
            wi, sh, bi = tensors[f"{name}.weight"], tensors[f"{name}.shift"], tensors[f"{name}.bias"]
            if wi.shape != (cout, cin, k) or sh.shape != (cout,) or bi.shape != (cout,):
                raise ValueError(f"model file: layer {name} has the wrong shape")
            fp.check_conv_bound(wi.to(torch.int64), bi.to(torch.int64), name)
            self.weights[name] = (wi.double(), bi.double(), sh.double())
            self.matrices[name] = wi.double().reshape(cout, -1).t().contiguous()  # (I*k, O)
        self._fast_tables()

    def _fast_tables(self) -> None:
        """float64 copies of the tables and the 2**-shift multipliers, computed once (same bits)."""
        self.scales = {k: torch.exp2(-w[2]) for k, w in self.weights.items()}
        self.tanh_f = self.tables["tanh"].to(torch.float64)
        self.sig_f = self.tables["sigmoid"].to(torch.float64)

    def to(self, device) -> "ExactOps":
        self.tables = {k: v.to(device) for k, v in self.tables.items()}
        self.weights = {k: tuple(t.to(device) for t in v) for k, v in self.weights.items()}
        self.matrices = {k: v.to(device) for k, v in self.matrices.items()}
        self._fast_tables()
        return self

    def conv(self, name: str, x: torch.Tensor, dilation: int = 1) -> torch.Tensor:
        w, b, _ = self.weights[name]
        acc = F.conv1d(x, w, dilation=dilation).round_().add_(b.view(1, -1, 1))
        return fp.clamp_act(fp.rescale_(acc, self.scales[name].view(1, -1, 1)))

    def window(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """One output step from its window (N, I, taps) -> (N, O): the cached decoder's conv."""
        acc = torch.addmm(self.weights[name][1], x.reshape(x.shape[0], -1), self.matrices[name])
        return acc.mul_(self.scales[name]).add_(0.5).floor_().clamp_(-fp.ACT_LIMIT, fp.ACT_LIMIT)

    def gate(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``rescale(tanh(a) * sigmoid(b), ACT_BITS)`` from the tables (float64 copies, indices
        clamped to the tables' ranges), for whole streams and for the cached decoder's steps."""
        t = torch.take(self.tanh_f, (a + fp.TANH_RANGE * fp.ONE).clamp_(0, 2 * fp.TANH_RANGE * fp.ONE).long())
        g = torch.take(self.sig_f, (b + fp.SIGMOID_RANGE * fp.ONE).clamp_(0, 2 * fp.SIGMOID_RANGE * fp.ONE).long())
        return t.mul_(g).mul_(1.0 / fp.ONE).add_(0.5).floor_()

    def elu(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, x, fp.lookup(self.tables["elu"], x, -fp.ELU_RANGE * fp.ONE))

    def add(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return fp.clamp_act(x + y)


def _head(ops, skips: torch.Tensor) -> torch.Tensor:
    return ops.conv("out2", ops.elu(ops.conv("out1", ops.elu(skips))))


def forward(ops, x: torch.Tensor) -> torch.Tensor:
    """Whole-stream pass: input (N, IN_CHANNELS, T) -> mixture parameters (N, 4K, T)."""
    cfg = ops.cfg
    h = ops.conv("in", F.pad(x, (1, 0)))
    skips = None
    for i, d in enumerate(cfg.dilations()):
        z = ops.conv(f"l{i}.dil", F.pad(h, (d, 0)), dilation=d)
        a, b = z.chunk(2, dim=1)
        o = ops.conv(f"l{i}.out", ops.gate(a, b))
        h = ops.add(h, o[:, :cfg.residual])
        skips = o[:, cfg.residual:] if skips is None else ops.add(skips, o[:, cfg.residual:])
    return _head(ops, skips)


class WaveNet(NamedConvs, nn.Module):
    """The trainable float model."""

    def __init__(self, cfg: WaveNetConfig):
        super().__init__()
        self.cfg = cfg
        self.ops = FloatOps(cfg)
        with torch.no_grad():  # start near "the linear predictor, with a scale of ~100 samples"
            out = self.ops.convs["out2"]
            out.weight.mul_(0.1)
            out.bias.zero_()
            k = cfg.mixtures
            out.bias[2 * k:3 * k] = 4.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return forward(self.ops, x)


ARCH = "wavenet"
Config, Model = WaveNetConfig, WaveNet


def convert(model: WaveNet) -> dict[str, torch.Tensor]:
    """Float model -> exact tensors (integer weights, shifts, biases, lookup tables)."""
    from . import audio_head
    out = exact_convs(model)
    for k, v in fp.build_tables().items():
        out[f"table.{k}"] = v.to(torch.int32)
    for k, v in audio_head.build_tables().items():
        out[f"table.{k}"] = v  # int64: the inverse scales reach 2**35
    out["table.mulaw"] = mulaw_table().to(torch.int32)
    return out


class CachedDecoder:
    """One time step at a time for N streams in lock-step: a queue per layer (Fast WaveNet).

    Layer ``i`` with dilation ``d`` keeps its last ``d`` inputs in a ring buffer (N, R, d); the
    input convolution keeps the previous input column.  :meth:`step` takes the input column of
    time ``t`` (N, IN_CHANNELS) and returns the mixture parameters (N, 4K) of time ``t``.
    """

    def __init__(self, ops: ExactOps, streams: int):
        self.ops, self.cfg = ops, ops.cfg
        z = lambda *s: torch.zeros(*s, dtype=torch.float64)  # noqa: E731
        self.prev_x = z(streams, IN_CHANNELS)
        self.queues = [z(streams, self.cfg.residual, d) for d in self.cfg.dilations()]
        self.t = 0

    def step(self, x: torch.Tensor) -> torch.Tensor:
        ops, cfg, t = self.ops, self.cfg, self.t
        h = ops.window("in", torch.stack([self.prev_x, x], -1))
        self.prev_x = x
        skips = None
        for i, d in enumerate(cfg.dilations()):
            q = self.queues[i]
            slot = t % d
            z = ops.window(f"l{i}.dil", torch.stack([q[:, :, slot], h], -1))
            q[:, :, slot] = h
            a, b = z.chunk(2, dim=1)
            o = ops.window(f"l{i}.out", ops.gate(a, b))
            h = ops.add(h, o[:, :cfg.residual])
            skips = o[:, cfg.residual:] if skips is None else ops.add(skips, o[:, cfg.residual:])
        self.t += 1
        out1 = ops.window("out1", ops.elu(skips).unsqueeze(-1))
        return ops.window("out2", ops.elu(out1).unsqueeze(-1))
