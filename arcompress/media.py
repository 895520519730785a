"""Reading and writing images with Pillow, keeping what a user would miss if lost.

An image is held as :class:`ImageData`: a (H, W, C) uint8 array of what is coded (palette
indices for "P"), its Pillow mode, and metadata that goes into the .arc header: the palette,
transparency, PNG text chunks, ICC profile, gamma, sRGB intent and DPI.  Anything else Pillow
reports is listed in :attr:`ImageData.dropped` so the CLI can say it was not kept.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

#: modes we code, and the modes Pillow reports for 16-bit or float images (refused for now)
SUPPORTED_MODES = ("L", "LA", "RGB", "RGBA", "P", "1")
HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
#: output formats by file extension; all lossless
WRITERS = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".ppm": "PPM",
           ".pgm": "PPM", ".pbm": "PPM", ".pnm": "PPM", ".webp": "WEBP"}
KEPT_INFO = ("icc_profile", "gamma", "srgb", "dpi", "transparency")
IGNORED_INFO = ("compression", "progression", "interlace", "aspect", "bmp_version", "loop",
                "background", "duration", "lossless", "exif", "xmp", "chromaticity")


class MediaError(ValueError):
    """The input is not an image we can code, or the output cannot be written."""


@dataclass
class ImageData:
    pixels: np.ndarray  # (H, W, C) uint8
    mode: str
    meta: dict = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)


def from_array(array: np.ndarray, mode: str | None = None) -> ImageData:
    """Wrap a numpy array (H, W) or (H, W, C) uint8 as ImageData; mode inferred from C."""
    a = np.asarray(array)
    if a.dtype != np.uint8:
        raise MediaError(f"expected a uint8 array, got {a.dtype} (16-bit images are not supported yet)")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or a.shape[0] == 0 or a.shape[1] == 0:
        raise MediaError(f"expected an array of shape (H, W) or (H, W, C) with C in 1..4, got {a.shape}")
    inferred = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[a.shape[2]]
    return ImageData(np.ascontiguousarray(a), mode or inferred)


def read_image(path: str | os.PathLike) -> ImageData:
    path = Path(path)
    try:
        im = Image.open(path)
        im.load()
    except FileNotFoundError:
        raise MediaError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise MediaError(f"{path}: is a directory") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise MediaError(f"{path}: not an image this tool can read ({e})") from None
    if getattr(im, "n_frames", 1) > 1:
        raise MediaError(f"{path}: has {im.n_frames} frames; only single-frame images are supported")
    mode = im.mode
    if mode in HIGH_DEPTH_MODES:
        raise MediaError(f"{path}: {mode} ({'16-bit' if 'I;16' in mode else '32-bit'}) images are not "
                         "supported yet; only 8-bit images are")
    if mode not in SUPPORTED_MODES:
        raise MediaError(f"{path}: image mode {mode} is not supported (supported: {', '.join(SUPPORTED_MODES)})")
    meta: dict = {}
    dropped: list[str] = []
    if mode == "P":
        pal = im.getpalette() or []
        meta["palette"] = list(pal)
        meta["palette_mode"] = im.palette.mode if im.palette else "RGB"
        if meta["palette_mode"] not in ("RGB", "RGBA"):
            raise MediaError(f"{path}: palette mode {meta['palette_mode']} is not supported")
    if mode == "1":
        pixels = np.asarray(im.convert("L"), dtype=np.uint8)
    else:
        pixels = np.asarray(im, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    for key, value in im.info.items():
        if key in KEPT_INFO:
            meta[key] = _encode_value(value)
        elif key in IGNORED_INFO:
            if key in ("exif", "xmp", "chromaticity"):
                dropped.append(key)
        elif isinstance(value, str) and isinstance(getattr(im, "text", None), dict) and key in im.text:
            meta.setdefault("text", {})[key] = value
        else:
            dropped.append(key)
    return ImageData(np.ascontiguousarray(pixels), mode, meta, dropped)


def _encode_value(v):
    if isinstance(v, bytes):
        return {"b64": base64.b64encode(v).decode()}
    if isinstance(v, tuple):
        return [_encode_value(x) for x in v]
    return v


def _decode_value(v):
    if isinstance(v, dict) and "b64" in v:
        return base64.b64decode(v["b64"])
    if isinstance(v, list):
        return tuple(_decode_value(x) for x in v)
    return v


def to_pil(img: ImageData) -> Image.Image:
    a = img.pixels
    if img.mode in ("L", "P", "1"):
        im = Image.fromarray(a[:, :, 0], "L")
        if img.mode == "P":
            im = im.copy()
            im.putpalette(img.meta.get("palette", []), img.meta.get("palette_mode", "RGB"))
            im = im.convert("P") if im.mode != "P" else im
        elif img.mode == "1":
            im = im.convert("1", dither=Image.Dither.NONE)
    else:
        im = Image.fromarray(a, img.mode)
    return im


def write_image(path: str | os.PathLike, img: ImageData) -> None:
    """Write losslessly in the format of the extension (PNG when there is none)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix and suffix not in WRITERS:
        raise MediaError(f"{path.name}: cannot write {suffix} losslessly; use one of "
                         f"{', '.join(sorted(WRITERS))}")
    fmt = WRITERS.get(suffix, "PNG")
    im = to_pil(img)
    if img.mode == "P" and im.mode != "P":
        raise MediaError("internal error: palette image lost its palette")
    kwargs: dict = {}
    meta = {k: _decode_value(v) for k, v in img.meta.items() if k in KEPT_INFO}
    if fmt == "PNG":
        if "text" in img.meta:
            info = PngImagePlugin.PngInfo()
            for k, v in img.meta["text"].items():
                info.add_text(k, v)
            kwargs["pnginfo"] = info
        for k in ("icc_profile", "transparency", "dpi"):
            if k in meta:
                kwargs[k] = meta[k]
        if "gamma" in meta:  # Pillow writes gAMA only through pnginfo
            info = kwargs.setdefault("pnginfo", PngImagePlugin.PngInfo())
            info.add(b"gAMA", int(round(meta["gamma"] * 100000)).to_bytes(4, "big"))
        if "srgb" in meta:
            info = kwargs.setdefault("pnginfo", PngImagePlugin.PngInfo())
            info.add(b"sRGB", bytes([int(meta["srgb"])]))
    elif fmt == "WEBP":
        kwargs.update(lossless=True, quality=100, method=4, exact=True)
        if "icc_profile" in meta:
            kwargs["icc_profile"] = meta["icc_profile"]
    elif fmt == "TIFF":
        if "icc_profile" in meta:
            kwargs["icc_profile"] = meta["icc_profile"]
        if "dpi" in meta:
            kwargs["dpi"] = meta["dpi"]
    elif fmt == "PPM" and img.mode not in ("L", "RGB", "1"):
        raise MediaError(f"{path.name}: PPM/PGM cannot hold a {img.mode} image; use .png")
    try:
        im.save(path, fmt, **kwargs)
    except (OSError, ValueError, KeyError) as e:
        raise MediaError(f"cannot write {path}: {e}") from None


def _palette_array(meta: dict) -> np.ndarray:
    """The palette as (entries, 3 or 4) uint8."""
    n = 4 if meta.get("palette_mode") == "RGBA" else 3
    pal = np.asarray(meta.get("palette", []), dtype=np.uint8)
    return pal[: len(pal) // n * n].reshape(-1, n)


def _first_index_of_colour(pal: np.ndarray) -> dict[bytes, int]:
    first: dict[bytes, int] = {}
    for i, colour in enumerate(pal):
        first.setdefault(colour.tobytes(), i)
    return first


def to_coded(img: ImageData) -> np.ndarray:
    """The array that is actually coded: palette images become their colours when that is
    reversible (every used index is the first palette entry of its colour), recorded in
    ``img.meta["palette_coding"]``; every other image is coded as it is."""
    if img.mode != "P":
        return img.pixels
    pal = _palette_array(img.meta)
    used = np.unique(img.pixels)
    if len(pal) and used.max() < len(pal):
        first = _first_index_of_colour(pal)
        if all(first[pal[u].tobytes()] == u for u in used):
            img.meta["palette_coding"] = "colour"
            return np.ascontiguousarray(pal[img.pixels[:, :, 0]])
    img.meta.pop("palette_coding", None)
    return img.pixels


def from_coded(mode: str, meta: dict, coded: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_coded`; raises MediaError if the colours are not in the palette."""
    if mode != "P" or meta.get("palette_coding") != "colour":
        return coded
    pal = _palette_array(meta)
    first = _first_index_of_colour(pal)
    flat = coded.reshape(-1, pal.shape[1])
    colours, inverse = np.unique(flat, axis=0, return_inverse=True)
    try:
        idx = np.array([first[c.tobytes()] for c in colours], dtype=np.uint8)
    except KeyError:
        raise MediaError("decoded colour is not in the palette: the file is corrupt") from None
    return idx[inverse.reshape(-1)].reshape(coded.shape[0], coded.shape[1], 1)


def coded_planes(mode: str, meta: dict) -> list[tuple[list[int], int]]:
    """Plane groups of the coded array: (channel indices, model channel count).

    Colour channels go through the RGB model together, grey and alpha planes through the grey
    model one at a time; palette images as colours (RGB, or RGB + alpha) or as an index plane.
    """
    if mode == "P" and meta.get("palette_coding") == "colour":
        mode = "RGBA" if meta.get("palette_mode") == "RGBA" else "RGB"
    return {
        "L": [([0], 1)], "1": [([0], 1)], "P": [([0], 1)],
        "LA": [([0], 1), ([1], 1)],
        "RGB": [([0, 1, 2], 3)],
        "RGBA": [([0, 1, 2], 3), ([3], 1)],
    }[mode]
