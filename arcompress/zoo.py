"""Model files: the shipped models and users' own, as safetensors (no pickle, no code).

A model file holds the exact model (integer weights, per-channel shifts, integer biases and
lookup tables), the float weights it was converted from (``float.*``, for measuring the
conversion's cost), and metadata: architecture config, scheme version, the data it was trained
on and its validation bits per sub-pixel.  Its identity is :attr:`ExactModel.digest`, the
SHA-256 of the exact tensors and config, recorded in every .arc file it writes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import audio_head, multires, pixelcnn, pixelsnail, wavenet
from . import fixedpoint as fp

FORMAT = "arcompress-model"
ARCH = pixelcnn.ARCH
SNAIL_ARCH = pixelsnail.ARCH
AUDIO_ARCH = wavenet.ARCH
#: architecture -> its module (Config, Model, ExactOps, layer_specs, convert, forward, CachedDecoder)
ARCHES = {m.ARCH: m for m in (pixelcnn, multires, pixelsnail, wavenet)}
#: shipped models: name -> file inside arcompress/models
SHIPPED = {"pixelcnn-rgb9": "pixelcnn-rgb9.safetensors", "pixelcnn-rgb8": "pixelcnn-rgb8.safetensors", "pixelcnn-rgb7": "pixelcnn-rgb7.safetensors", "pixelcnn-rgb6": "pixelcnn-rgb6.safetensors", "pixelcnn-rgb5": "pixelcnn-rgb5.safetensors", "pixelcnn-rgb4": "pixelcnn-rgb4.safetensors",
           "pixelcnn-rgb3": "pixelcnn-rgb3.safetensors",
           "pixelcnn-rgb2": "pixelcnn-rgb2.safetensors", "pixelcnn-rgb": "pixelcnn-rgb.safetensors", "pixelcnn-gray4": "pixelcnn-gray4.safetensors", "pixelcnn-gray3": "pixelcnn-gray3.safetensors",
           "pixelcnn-gray2": "pixelcnn-gray2.safetensors",
           "pixelcnn-gray": "pixelcnn-gray.safetensors",
           "pixelcnn-fashion28": "pixelcnn-fashion28.safetensors", "pixelsnail": "pixelsnail.safetensors",
           "pixelcnn-multires": "pixelcnn-multires.safetensors",
           "wavenet-speech8k3": "wavenet-speech8k3.safetensors", "wavenet-speech8k2": "wavenet-speech8k2.safetensors", "wavenet-speech8k": "wavenet-speech8k.safetensors",
           "wavenet-audio2": "wavenet-audio2.safetensors",
           "wavenet-audio": "wavenet-audio.safetensors"}
#: the default image model per number of channels in a plane group
DEFAULTS = {3: "pixelcnn-rgb9", 1: "pixelcnn-gray4"}
#: the default audio model (any sample rate)
AUDIO_DEFAULT = "wavenet-audio2"
#: the highest sample rate (Hz) coded as telephone-band speech (its own model and chunk length)
SPEECH_MAX_RATE = 12000
#: the default audio model by sample rate, as bands for :func:`rate_band`; telephone-band
#: recordings get a model fine-tuned on 8 kHz speech
AUDIO_RATE_DEFAULTS = ((SPEECH_MAX_RATE, "wavenet-speech8k3"), (None, AUDIO_DEFAULT))
#: ``--model best``: the encoder tries every shipped image model for a plane group's channel count
BEST = "best"


def rate_band(bands, rate: int):
    """The value of the first (upper limit in Hz or None, value) band whose limit ``rate`` does
    not exceed."""
    return next(value for limit, value in bands if limit is None or rate <= limit)


def audio_default(rate: int) -> str:
    """The shipped audio model that codes a recording of ``rate`` Hz by default."""
    return rate_band(AUDIO_RATE_DEFAULTS, rate)


def model_class(cfg):
    """The float model class of a config (PixelCNN, PixelSNAIL or WaveNet)."""
    return next(m.Model for m in ARCHES.values() if type(cfg) is m.Config)


class ModelError(ValueError):
    """A model cannot be found, read, or used."""


@dataclass
class ExactModel:
    """A loaded exact model: config, exact ops, and identity."""

    name: str
    config: pixelcnn.PixelCNNConfig | multires.MultiResConfig | pixelsnail.PixelSNAILConfig | wavenet.WaveNetConfig
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)
    source: str = ""  # the file it was loaded from
    arch: str = ARCH

    def __post_init__(self):
        self.net = ARCHES[self.arch]
        self.ops = self.net.ExactOps(self.config, self.tensors)
        self.digest = digest(self.config, self.tensors, self.arch)

    def matches(self, recorded: bytes) -> bool:
        """Whether a digest recorded in a file (the SHA-256 or its first 8 bytes) is this model's."""
        return len(recorded) >= 8 and self.digest.startswith(recorded)

    @property
    def is_audio(self) -> bool:
        return self.arch == AUDIO_ARCH

    def float_model(self):
        """The float model this exact model was converted from, if the file carries it."""
        if not any(k.startswith("float.") for k in self.tensors):
            return None
        model = self.net.Model(self.config)
        model.load_float_state({k[6:]: v for k, v in self.tensors.items() if k.startswith("float.")})
        return model.eval()


def exact_keys(cfg, arch: str = ARCH) -> list[str]:
    specs = ARCHES[arch].layer_specs(cfg)
    keys = [f"{n}.{p}" for n in specs for p in ("weight", "shift", "bias")]
    keys += [f"table.{k}" for k in fp.TABLE_SIZES]
    if arch == AUDIO_ARCH:
        keys += ["table.mulaw"] + [f"table.{k}" for k in audio_head.AUDIO_TABLE_SIZES]
    return sorted(keys)


def digest(cfg, tensors: dict[str, torch.Tensor], arch: str = ARCH) -> bytes:
    """SHA-256 over the config, the scheme version and every exact tensor (name, dtype, shape, bytes)."""
    h = hashlib.sha256()
    h.update(json.dumps({"arch": arch, "config": cfg.to_dict(), "scheme": fp.SCHEME_VERSION},
                        sort_keys=True).encode())
    for k in exact_keys(cfg, arch):
        t = tensors[k].contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.digest()


def save_model(path: str | os.PathLike, model, metadata: dict[str, str] | None = None) -> None:
    """Convert a float model (PixelCNN or WaveNet) and write it as a model file (atomically)."""
    net = next(m for m in ARCHES.values() if type(model) is m.Model)
    tensors = net.convert(model)
    tensors.update({f"float.{k}": v for k, v in model.float_state().items()})
    meta = {"format": FORMAT, "arch": net.ARCH, "scheme": str(fp.SCHEME_VERSION),
            "config": json.dumps(model.cfg.to_dict())}
    meta.update(metadata or {})
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # a model file is not a secret
    os.replace(tmp, path)


def load_model(path: str | os.PathLike, name: str | None = None) -> ExactModel:
    """Read and validate a model file; raise ModelError with a clear message if it is unusable."""
    path = Path(path)
    try:
        tensors = load_file(str(path))
        with open(path, "rb") as f:  # metadata: safetensors keeps it in the JSON header
            n = int.from_bytes(f.read(8), "little")
            meta = json.loads(f.read(n)).get("__metadata__", {}) if n < (1 << 26) else {}
    except FileNotFoundError:
        raise ModelError(f"model file not found: {path}") from None
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as e:
        raise ModelError(f"{path}: not a readable model file ({e})") from None
    arch = meta.get("arch")
    if meta.get("format") != FORMAT or arch not in ARCHES:
        raise ModelError(f"{path}: not an arcompress model file")
    if meta.get("scheme") != str(fp.SCHEME_VERSION):
        raise ModelError(f"{path}: exact scheme version {meta.get('scheme')} is not supported "
                         f"(this arcompress uses {fp.SCHEME_VERSION})")
    try:
        cfg = ARCHES[arch].Config.from_dict(json.loads(meta["config"]))
        missing = [k for k in exact_keys(cfg, arch) if k not in tensors]
        if missing:
            raise ValueError(f"missing tensors {missing[:3]}")
        return ExactModel(name or meta.get("name") or path.stem, cfg, tensors, meta, str(path), arch)
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as e:
        raise ModelError(f"{path}: invalid model file ({e})") from None


def shipped_path(name: str) -> Path:
    return Path(str(resources.files("arcompress") / "models" / SHIPPED[name]))


_cache: dict[str, ExactModel] = {}


def shipped_by_digest(recorded: bytes) -> ExactModel | None:
    """The shipped model whose SHA-256 starts with ``recorded`` (a file's digest), if any."""
    return next((m for m in map(resolve, SHIPPED) if m.matches(recorded)), None)


def shipped_image_models(channels: int) -> list[ExactModel]:
    """The shipped image models that code ``channels`` channels (the candidates of ``--model best``)."""
    models = [resolve(name) for name in SHIPPED]
    return [m for m in models if not m.is_audio and m.config.channels == channels]


def is_shipped(model: ExactModel) -> bool:
    """Whether ``model`` is one of the models that ship inside the package (same weights)."""
    return model.name in SHIPPED and resolve(model.name).digest == model.digest


def resolve(spec: str) -> ExactModel:
    """A shipped model by name, or a model file by path."""
    if spec in _cache:
        return _cache[spec]
    if spec in SHIPPED:
        model = load_model(shipped_path(spec), name=spec)
    elif os.path.exists(spec) or os.sep in spec or spec.endswith(".safetensors"):
        model = load_model(spec)
    else:
        raise ModelError(f"unknown model {spec!r}: use one of {', '.join(SHIPPED)} or a model file path")
    _cache[spec] = model
    return model

