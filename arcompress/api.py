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

from . import codec, container, zoo
from .codec import EncodeStats
from .media import WRITERS, ImageData, from_array, read_image, write_image


def _model_chooser(model: str | None):
    """Channels -> model: the named / given model for its channel count, defaults otherwise."""
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
    def find(name: str, digest: bytes) -> zoo.ExactModel:
        for spec in extra or []:
            m = zoo.resolve(spec)
            if m.digest == digest:
                return m
        if extra and name not in zoo.SHIPPED:
            raise zoo.ModelError(f"the file was written with model {name!r} (SHA-256 {digest.hex()[:16]}...), "
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
    (H, W, 4) RGBA.  ``model``: a shipped model name or a model file path (default: shipped)."""
    return compress_image(from_array(array), model, tile, device)[0]


def decompress(data: bytes, model: str | None = None) -> np.ndarray:
    """Inverse of :func:`compress`: the identical array ((H, W) for grey input, else (H, W, C))."""
    img = decompress_image(data, model)
    return img.pixels[:, :, 0] if img.pixels.shape[2] == 1 else img.pixels


def info(data: bytes) -> dict:
    """The header of .arc bytes as a dict (no decoding)."""
    h = container.unpack(data)
    n = h.height * h.width * sum(p.channels for p in h.planes)
    return {
        "format_version": container.FORMAT_VERSION, "scheme": h.scheme,
        "width": h.width, "height": h.height, "mode": h.mode,
        "tile": h.tile, "tiles_per_segment": h.group,
        "models": [{"name": p.model_name, "sha256": p.model_digest.hex(), "channels": p.channels,
                    "segments": len(p.segments), "payload_bytes": sum(map(len, p.segments))}
                   for p in h.planes],
        "crc32": f"{h.crc32:08x}", "metadata": sorted(h.meta),
        "file_bytes": len(data), "subpixels": n, "bits_per_subpixel": 8 * len(data) / n,
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
    img = read_image(src)
    data, stats = compress_image(img, model, device=device, progress=progress)
    if verify:
        back = decompress_image(data, model, progress=progress)
        if not np.array_equal(back.pixels, img.pixels) or back.mode != img.mode:
            raise RuntimeError("verification failed: the decoded image differs (please report this)")
    write_atomic(dst, data, force=force)
    return {"input": str(src), "output": str(dst), "bytes": len(data), "subpixels": img.pixels.size,
            "bits_per_subpixel": 8 * len(data) / img.pixels.size,
            "model_bits_per_subpixel": stats.nll_bits / img.pixels.size,
            "dropped_metadata": img.dropped, "verified": verify}


def decode_file(src: str | os.PathLike, dst: str | os.PathLike | None = None, model: str | None = None,
                force: bool = False, progress: bool | None = None) -> dict:
    """Decode an .arc file to ``dst``.

    Default: ``src`` without '.arc' (photo.png.arc -> photo.png), with '.png' added when that
    name's extension is not a lossless format arcompress writes (photo.jpg.arc -> photo.jpg.png).
    """
    src = Path(src)
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
