"""The Python API: numpy arrays and files in, bytes and files out.

>>> import numpy as np, arcompress
>>> img = np.zeros((8, 8, 3), np.uint8)
>>> data = arcompress.compress(img)
>>> bool((arcompress.decompress(data) == img).all())
True
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from . import audio_codec, codec, container, zoo
from .audiofile import (FORMATS, AudioInfo, AudioWriter, dropped_chunks, is_audio_path,
                        output_format, probe, read_blocks)
from .codec import EncodeStats
from .media import WRITERS, ImageData, from_array, read_image, write_image


def _model_chooser(model: str | None):
    """Channels -> model: the named / given model for its channel count, defaults otherwise;
    for ``best`` (zoo.BEST), the list of shipped models the encoder picks from."""
    if model == zoo.BEST:
        return zoo.shipped_image_models
    chosen = zoo.resolve(model) if model else None

    def pick(channels: int) -> zoo.ExactModel:
        if chosen is not None and chosen.config.channels == channels:
            return chosen
        return zoo.resolve(zoo.DEFAULTS[channels])
    if chosen is not None and chosen.config.channels not in zoo.DEFAULTS:
        raise zoo.ModelError(f"model {chosen.name} codes {chosen.config.channels} channels; "
                             "image models code 1 (grey) or 3 (RGB)")
    return pick


def _model_finder(extra: list[str] | None):
    """(name, digest) -> model: the given model files first, then the shipped models."""
    extra = [spec for spec in extra or [] if spec != zoo.BEST]  # best: shipped models only

    def find(name: str, digest: bytes) -> zoo.ExactModel:
        for spec in extra:
            m = zoo.resolve(spec)
            if m.matches(digest):
                return m
        if extra and name not in zoo.SHIPPED and (name or zoo.shipped_by_digest(digest) is None):
            which = f"model {name!r}" if name else "a model"
            raise zoo.ModelError(f"the file was written with {which} (SHA-256 {digest.hex()[:16]}...), "
                                 f"and the given model file(s) do not match it")
        return codec.default_model_for(name, digest)
    return find


def compress_image(img: ImageData, model: str | None = None, tile: int = codec.DEFAULT_TILE,
                   device: str = "auto", progress: bool | None = False) -> tuple[bytes, EncodeStats]:
    return codec.encode_image(img, _model_chooser(model), tile=tile, device=device, progress=progress)


def decompress_image(data: bytes, model: str | None = None, progress: bool | None = False) -> ImageData:
    return codec.decode_image(data, _model_finder([model] if model else None), progress=progress)


def compress(array: np.ndarray, model: str | None = None, tile: int = codec.DEFAULT_TILE,
             device: str = "auto") -> bytes:
    """Losslessly compress a uint8 image array (H, W) grey, (H, W, 2) grey+alpha, (H, W, 3) RGB or
    (H, W, 4) RGBA.  ``model``: a shipped model name or a model file path (default: shipped), or
    ``"best"``: every shipped model for each plane's channel count is tried and the one with the
    fewest estimated bits codes it (an exact forward pass per candidate)."""
    return compress_image(from_array(array), model, tile, device)[0]


def decompress(data: bytes, model: str | None = None) -> np.ndarray:
    """Inverse of :func:`compress`: the identical array ((H, W) for grey input, else (H, W, C))."""
    img = decompress_image(data, model)
    return img.pixels[:, :, 0] if img.pixels.shape[2] == 1 else img.pixels


def _audio_model(model: str | None, rate: int) -> zoo.ExactModel:
    """The model that codes a recording of ``rate`` Hz: ``model``, or the shipped one for its rate."""
    m = zoo.resolve(zoo.audio_default(rate) if model in (None, zoo.BEST) else model)
    if not m.is_audio:
        raise zoo.ModelError(f"model {m.name} is an image model; audio needs a WaveNet model "
                             f"(e.g. {zoo.AUDIO_DEFAULT})")
    return m


def compress_audio(samples: np.ndarray, rate: int, bits: int | None = None, model: str | None = None,
                   chunk: int | None = None, device: str = "auto") -> bytes:
    """Losslessly compress integer PCM audio: ``samples`` (frames,) or (frames, channels).

    ``bits``: 8, 16 or 24 (default: 8 for int8, 16 for int16; int32 arrays need ``bits=24``).
    ``chunk``: frames per independently coded chunk (default: ``audio_codec.default_chunk(rate)``).
    Decompressing gives a WAV-flavoured stream (format recorded as WAV).
    """
    a = np.asarray(samples)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] < 1 or a.dtype.kind not in "iu":
        raise ValueError("audio must be an integer array (frames,) or (frames, channels)")
    bits = bits or {1: 8, 2: 16}.get(a.dtype.itemsize)
    if bits not in (8, 16, 24):
        raise ValueError("give bits=8, 16 or 24 for this array's dtype")
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if a.size and (int(a.min()) < lo or int(a.max()) > hi):
        raise ValueError(f"samples exceed the {bits}-bit range")
    native = a.astype(np.int32)
    info = AudioInfo(int(rate), a.shape[1], a.shape[0], bits, "WAV", {8: "PCM_U8", 16: "PCM_16", 24: "PCM_24"}[bits])
    parts = list(audio_codec.encode_stream(_audio_model(model, rate), info, lambda: iter([native]), chunk=chunk,
                                           device=device, progress=False))
    return b"".join(parts[:-1])


def decompress_audio(data: bytes, model: str | None = None) -> tuple[np.ndarray, int]:
    """Inverse of :func:`compress_audio`: (samples (frames, channels) int16 / int8 / int32, rate)."""
    gen = audio_codec.decode_stream(container.audio_reader(data), _model_finder([model] if model else None))
    info = next(gen)
    blocks = list(gen)
    a = np.concatenate(blocks) if blocks else np.zeros((0, info.channels), np.int32)
    return a.astype({8: np.int8, 16: np.int16, 24: np.int32}[info.bits]), info.rate


def info(data: bytes) -> dict:
    """The header of .arc bytes as a dict (no decoding)."""
    if container.peek_kind(data[:7]) == container.KIND_AUDIO:
        return _audio_info(data)
    h = container.unpack(data)
    n = h.height * h.width * sum(p.channels for p in h.planes)
    return {
        "format_version": h.version, "scheme": h.scheme,
        "width": h.width, "height": h.height, "mode": h.mode,
        "tile": h.tile, "tiles_per_segment": h.group,
        "models": [{"name": p.model_name or _shipped_name(p.model_digest), "sha256": p.model_digest.hex(),
                    "channels": p.channels, "segments": len(p.segments),
                    "payload_bytes": sum(map(len, p.segments)),
                    # per channel, how many levels its level set admits (None: all 256)
                    "level_sets": [None if m is None else bin(m).count("1") for m in p.levels] or None,
                    # the gains and offsets of its output parameters (format 13), or None
                    "calibration": None if p.calibration is None else
                    {"gains": list(p.calibration[0]), "offsets": list(p.calibration[1])}}
                   for p in h.planes],
        "crc32": f"{h.crc32:08x}", "metadata": sorted(h.meta),
        "file_bytes": len(data), "subpixels": n, "bits_per_subpixel": 8 * len(data) / n,
    }


def _shipped_name(digest: bytes) -> str:
    """The name of the shipped model a version-4 header identifies by its digest alone."""
    model = zoo.shipped_by_digest(digest)
    return model.name if model is not None else "(a shipped model this version does not have)"


def _audio_info(data: bytes) -> dict:
    r = container.audio_reader(data)
    h = container.read_audio_header(r)
    n = h.frames * h.channels
    return {
        "format_version": data[4], "scheme": h.scheme, "kind": "audio",
        "channels": h.channels, "rate": h.rate, "frames": h.frames, "seconds": h.frames / h.rate,
        "bits": h.bits, "wasted_bits": h.wasted, "uniform_low_bits": h.low_bits,
        "chunk": h.chunk, "chunks_per_segment": h.group, "segments": h.segment_count(),
        "models": [{"name": h.model_name or _shipped_name(h.model_digest), "sha256": h.model_digest.hex(),
                    "channels": h.channels, "segments": h.segment_count(), "payload_bytes": len(data) - r.pos}],
        "crc32": f"{h.crc32:08x}", "container": h.meta.get("format"), "subtype": h.meta.get("subtype"),
        "metadata": sorted(h.meta.get("tags", {})),
        "file_bytes": len(data), "samples": n, "bits_per_sample": 8 * len(data) / max(n, 1),
    }


def write_atomic(path: str | os.PathLike, data: bytes | None = None, writer=None, force: bool = False) -> None:
    """Write bytes (or call ``writer(tmp_path)``) to a temporary file beside ``path``, then rename.

    Refuses to replace an existing file unless ``force``; never leaves a partial file behind.
    """
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path}: already exists (use --force to overwrite)")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            if data is not None:
                f.write(data)
        if writer is not None:
            writer(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def encode_file(src: str | os.PathLike, dst: str | os.PathLike | None = None, model: str | None = None,
                device: str = "auto", force: bool = False, verify: bool = False,
                progress: bool | None = None) -> dict:
    """Encode an image file to ``dst`` (default ``src + '.arc'``). Returns a summary dict."""
    src = Path(src)
    dst = Path(dst) if dst else src.with_name(src.name + ".arc")
    if dst.exists() and not force:
        raise FileExistsError(f"{dst}: already exists (use --force to overwrite)")
    if is_audio_path(src):
        return _encode_audio_file(src, dst, model, device, force, verify, progress)
    img = read_image(src)
    data, stats = compress_image(img, model, device=device, progress=progress)
    if verify:
        back = decompress_image(data, model, progress=progress)
        if not np.array_equal(back.pixels, img.pixels) or back.mode != img.mode:
            raise RuntimeError("verification failed: the decoded image differs (please report this)")
    write_atomic(dst, data, force=force)
    return {"input": str(src), "output": str(dst), "bytes": len(data), "subpixels": img.pixels.size,
            "bits_per_subpixel": 8 * len(data) / img.pixels.size,
            "model_bits_per_subpixel": stats.nll_bits / img.pixels.size, "models": stats.models,
            "dropped_metadata": img.dropped, "verified": verify}


def _encode_audio_file(src: Path, dst: Path, model, device, force, verify, progress) -> dict:
    info_ = probe(src)
    m = _audio_model(model, info_.rate)
    block = 1 << 16
    stats = None

    def write(tmp):
        nonlocal stats
        with open(tmp, "wb") as f:
            for part in audio_codec.encode_stream(m, info_, lambda: read_blocks(src, block), device=device,
                                                  progress=progress):
                if isinstance(part, audio_codec.AudioEncodeStats):
                    stats = part
                else:
                    f.write(part)
        if verify:
            _verify_audio(tmp, src, m, progress)

    write_atomic(dst, writer=write, force=force)
    n = info_.frames * info_.channels
    size = dst.stat().st_size
    return {"input": str(src), "output": str(dst), "bytes": size, "samples": n,
            "bits_per_sample": 8 * size / max(n, 1), "model_bits_per_sample": stats.nll_bits / max(n, 1),
            "dropped_metadata": dropped_chunks(src), "verified": verify, "kind": "audio"}


def _verify_audio(arc_path, src: Path, model: zoo.ExactModel, progress) -> None:
    """Decode ``arc_path`` and compare it with the samples of ``src``, block by block."""
    with open(arc_path, "rb") as f:
        gen = audio_codec.decode_stream(container.audio_reader(f, os.fstat(f.fileno()).st_size),
                                        lambda name, digest: model, progress=progress)
        next(gen)
        decoded = audio_codec._rechunk(gen, 1 << 16)
        for want in audio_codec._rechunk(read_blocks(src, 1 << 16), 1 << 16):
            got = next(decoded, None)
            if got is None or not np.array_equal(got, want):
                raise RuntimeError("verification failed: the decoded audio differs (please report this)")
        if next(decoded, None) is not None:
            raise RuntimeError("verification failed: the decoded audio is longer (please report this)")


def _decode_audio_file(src: Path, dst: Path | None, model, force, progress) -> dict:
    with open(src, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        gen = audio_codec.decode_stream(container.audio_reader(f, size), _model_finder([model] if model else None),
                                        progress=progress)
        info_ = next(gen)
        if dst is None:
            dst = src.with_suffix("") if src.suffix == ".arc" else src
            if dst == src or dst.suffix.lower() not in FORMATS:
                dst = dst.with_name(dst.name + {"WAV": ".wav", "FLAC": ".flac", "AIFF": ".aiff"}.get(info_.format, ".wav"))
        dst = Path(dst)
        fmt, subtype = output_format(dst, info_)
        if dst.exists() and not force:
            raise FileExistsError(f"{dst}: already exists (use --force to overwrite)")

        def write(tmp):
            with AudioWriter(tmp, info_, fmt, subtype) as w:
                for block in gen:
                    w.write(block)

        write_atomic(dst, writer=write, force=force)
    return {"input": str(src), "output": str(dst), "kind": "audio", "channels": info_.channels,
            "rate": info_.rate, "frames": info_.frames, "bits": info_.bits}


def decode_file(src: str | os.PathLike, dst: str | os.PathLike | None = None, model: str | None = None,
                force: bool = False, progress: bool | None = None) -> dict:
    """Decode an .arc file to ``dst``.

    Default: ``src`` without '.arc' (photo.png.arc -> photo.png), with '.png' added when that
    name's extension is not a lossless format arcompress writes (photo.jpg.arc -> photo.jpg.png).
    """
    src = Path(src)
    try:
        with open(src, "rb") as f:
            kind = container.peek_kind(f.read(7))
    except FileNotFoundError:
        raise FileNotFoundError(f"{src}: no such file") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"{src}: is a directory") from None
    if kind == container.KIND_AUDIO:
        return _decode_audio_file(src, Path(dst) if dst else None, model, force, progress)
    if dst is None:
        dst = src.with_suffix("") if src.suffix == ".arc" else src
        if dst == src or dst.suffix.lower() not in WRITERS:
            dst = dst.with_name(dst.name + ".png")
    dst = Path(dst)
    if dst.suffix and dst.suffix.lower() not in WRITERS:
        raise ValueError(f"{dst.name}: cannot write {dst.suffix} losslessly; use one of {', '.join(sorted(WRITERS))}")
    if dst.exists() and not force:
        raise FileExistsError(f"{dst}: already exists (use --force to overwrite)")
    try:
        data = src.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{src}: no such file") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"{src}: is a directory") from None
    img = decompress_image(data, model, progress=progress)
    write_atomic(dst, writer=lambda tmp: write_image(tmp, img), force=force)
    return {"input": str(src), "output": str(dst), "width": img.pixels.shape[1],
            "height": img.pixels.shape[0], "mode": img.mode}
