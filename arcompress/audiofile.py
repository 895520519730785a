"""Reading and writing audio files (soundfile): WAV, FLAC, AIFF with 8/16/24-bit integer PCM.

Samples are handled as ``native`` integers at the file's own bit depth, (frames, channels)
int32: 8-bit files hold -128..127 (unsigned 8-bit WAV is shifted by soundfile, and shifted
back when written), 16-bit files int16 values, 24-bit files -2**23..2**23-1.  The model sees
16-bit values (:func:`to_model`): 8-bit samples times 256, 24-bit samples' top 16 bits (their
low byte is coded separately, see audio_codec).  Long files are read and written in blocks, so
memory does not grow with the length of the recording.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

#: file suffix -> soundfile container format
FORMATS = {".wav": "WAV", ".flac": "FLAC", ".aif": "AIFF", ".aiff": "AIFF", ".aifc": "AIFF"}
AUDIO_SUFFIXES = set(FORMATS)
#: integer PCM subtypes we code losslessly -> bits per sample
SUBTYPE_BITS = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24}
#: text tags soundfile can read and write (kept in the .arc header)
TAGS = ("title", "copyright", "software", "artist", "comment", "date", "album", "license",
        "tracknumber", "genre")


class AudioError(ValueError):
    """Not an audio file arcompress can code losslessly."""


@dataclass
class AudioInfo:
    """What the container records about a recording (everything but the samples)."""

    rate: int
    channels: int
    frames: int
    bits: int
    format: str
    subtype: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class AudioData:
    """A whole recording in memory (the Python API; files are streamed in blocks instead)."""

    samples: np.ndarray  # (frames, channels) int32, native values
    info: AudioInfo

    @property
    def rate(self) -> int:
        return self.info.rate

    def model_samples(self) -> np.ndarray:
        return to_model(self.samples, self.info.bits)


def to_model(native: np.ndarray, bits: int) -> np.ndarray:
    """Native samples -> the 16-bit values the model codes (int64, same shape)."""
    x = native.astype(np.int64)
    return x << (16 - bits) if bits <= 16 else x >> (bits - 16)


def is_audio_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in AUDIO_SUFFIXES


def probe(path: str | os.PathLike) -> AudioInfo:
    """Read the header of an audio file; AudioError if arcompress cannot code it losslessly."""
    path = Path(path)
    try:
        with sf.SoundFile(str(path)) as f:
            subtype, fmt = f.subtype, f.format
            info = AudioInfo(f.samplerate, f.channels, f.frames, SUBTYPE_BITS.get(subtype, 0), fmt, subtype,
                             {k: v for k in TAGS if (v := getattr(f, k, "") or "")})
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except sf.LibsndfileError as e:
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file") from None
        raise AudioError(f"{path}: not a readable audio file ({e})") from None
    if subtype in ("FLOAT", "DOUBLE"):
        raise AudioError(f"{path}: floating-point audio ({subtype}) is not supported; "
                         "arcompress codes 8-, 16- and 24-bit integer PCM")
    if info.bits == 0:
        raise AudioError(f"{path}: sample format {subtype} is not supported; "
                         "arcompress codes 8-, 16- and 24-bit integer PCM")
    if fmt not in FORMATS.values():
        raise AudioError(f"{path}: container {fmt} is not supported (WAV, FLAC or AIFF)")
    if not 1 <= info.channels <= 255:
        raise AudioError(f"{path}: {info.channels} channels are not supported")
    return info


def read_blocks(path: str | os.PathLike, frames: int):
    """Yield native (n, channels) int32 blocks of at most ``frames`` frames."""
    info = probe(path)
    shift = 32 - info.bits
    with sf.SoundFile(str(path)) as f:
        while True:
            block = f.read(frames, dtype="int32", always_2d=True)
            if not len(block):
                return
            yield block >> shift


def read_audio(path: str | os.PathLike) -> AudioData:
    info = probe(path)
    blocks = list(read_blocks(path, 1 << 20))
    samples = np.concatenate(blocks) if blocks else np.zeros((0, info.channels), np.int32)
    return AudioData(samples, info)


class AudioWriter:
    """Write native blocks to ``path`` in the given format and subtype (a context manager)."""

    def __init__(self, path: str | os.PathLike, info: AudioInfo, fmt: str | None = None,
                 subtype: str | None = None):
        self.shift = 32 - info.bits
        self.f = sf.SoundFile(str(path), "w", samplerate=info.rate, channels=info.channels,
                              subtype=subtype or info.subtype, format=fmt or info.format)
        for k, v in info.tags.items():
            try:
                setattr(self.f, k, v)
            except (RuntimeError, sf.LibsndfileError):
                pass  # a tag this container cannot hold

    def write(self, native: np.ndarray) -> None:
        self.f.write((native.astype(np.int32) << self.shift).astype(np.int32))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def output_format(path: str | os.PathLike, info: AudioInfo) -> tuple[str, str]:
    """(container, subtype) to write for an output path: its extension's container, the original
    subtype (8-bit samples: the container's own 8-bit flavour, unsigned in WAV, signed elsewhere)."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise AudioError(f"{Path(path).name}: cannot write audio as {Path(path).suffix or 'no extension'}; "
                         f"use one of {', '.join(sorted(AUDIO_SUFFIXES))}")
    subtype = info.subtype
    if info.bits == 8 and not sf.check_format(fmt, subtype):
        subtype = "PCM_S8" if subtype == "PCM_U8" else "PCM_U8"
    if not sf.check_format(fmt, subtype):
        raise AudioError(f"{Path(path).name}: {fmt} cannot hold {info.subtype} samples")
    return fmt, subtype


#: WAV / AIFF chunks that hold the samples, their format, padding or tags we keep
_KEPT_CHUNKS = {b"fmt ", b"data", b"fact", b"ds64", b"JUNK", b"junk", b"PAD ", b"pad ", b"FLLR",
                b"COMM", b"SSND", b"FVER", b"NAME", b"AUTH", b"(c) ", b"ANNO", b"COMT"}
#: FLAC metadata blocks we keep (stream info, padding, seek table, Vorbis comments: tags)
_KEPT_FLAC_BLOCKS = {0: "STREAMINFO", 1: "PADDING", 3: "SEEKTABLE", 4: "VORBIS_COMMENT"}
_FLAC_BLOCKS = {2: "APPLICATION", 5: "CUESHEET", 6: "PICTURE"}


def dropped_chunks(path: str | os.PathLike, limit: int = 1 << 12) -> list[str]:
    """Metadata in the file that arcompress does not keep: WAV/AIFF chunks other than the samples,
    format and text tags (e.g. ``cue``, ``bext``, ``ID3``), FLAC blocks such as PICTURE or
    CUESHEET.  Reads only the chunk headers (at most ``limit`` of them); [] if unreadable."""
    out: list[str] = []
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:4] == b"fLaC":
                f.seek(4)
                for _ in range(limit):
                    h = f.read(4)
                    if len(h) < 4:
                        break
                    kind, size = h[0] & 0x7F, int.from_bytes(h[1:4], "big")
                    if kind not in _KEPT_FLAC_BLOCKS:
                        out.append(_FLAC_BLOCKS.get(kind, f"block {kind}"))
                    if h[0] & 0x80:
                        break
                    f.seek(size, 1)
                return out
            order = {b"RIFF": "little", b"RF64": "little", b"FORM": "big"}.get(head[:4])
            if order is None or head[8:12] not in (b"WAVE", b"AIFF", b"AIFC"):
                return out
            for _ in range(limit):
                h = f.read(8)
                if len(h) < 8:
                    break
                cid, size = h[:4], int.from_bytes(h[4:], order)
                if cid == b"LIST":
                    kind = f.read(4)
                    if kind != b"INFO":
                        out.append(f"LIST/{kind.decode('latin-1').strip()}")
                    size -= 4
                elif cid not in _KEPT_CHUNKS:
                    out.append(cid.decode("latin-1").strip() or repr(cid))
                if cid == b"data" and size == 0xFFFFFFFF:  # RF64: the real size is in ds64
                    break
                f.seek(size + (size & 1), 1)
    except OSError:
        return []
    return list(dict.fromkeys(out))
