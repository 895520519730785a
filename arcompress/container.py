"""The .arc file format (DESIGN section 4).

Image layout, versions 5-9 (integers are unsigned LEB128 varints unless a size is given)::

    magic      4 bytes  b"\\x8bARC"
    version    1 byte   FORMAT_VERSION
    scheme     1 byte   exact-arithmetic version (fixedpoint.SCHEME_VERSION)
    kind       1 byte   1 = image
    height, width
    mode       1 byte   bits 0-2: index into MODES; bit 3 (HAS_META): metadata follows; bit 4
                        (HAS_NAMES): each plane group names its model; bit 5 (HAS_PLAN): the
                        tiling follows (else it is plan.default_plan(height, width)); bit 6
                        (HAS_LEVELS, version 8): each plane group has level sets; bit 7
                        (HAS_CALIBRATION, version 13): each plane group has a calibration field
    tile, group         only with HAS_PLAN
    crc32      4 bytes  CRC-32 of the raw samples (little endian)
    meta                only with HAS_META: varint length + zlib-compressed JSON (palette, PNG
                        text/ICC/gamma, ...)
    plane groups        as many as media.coded_planes(mode, meta) gives, each:
                        model name (1-byte length + UTF-8) only with HAS_NAMES, empty for a
                        shipped model; the first 8 bytes of the model's SHA-256 (a shipped
                        model is found by them: zoo.shipped_by_digest); only with HAS_LEVELS,
                        its level sets (:func:`pack_level_sets`: which channels have one, and
                        for each its lowest and highest level and a bitmap between them); only
                        with HAS_CALIBRATION, its calibration (:func:`pack_calibration`: a count,
                        0 for none, then that many gains and offsets of the model's output
                        parameters, calibration.py; Rice-coded from version 14); each
                        segment's byte length (as many segments as the tiling has tile groups)
    hcrc       4 bytes  CRC-32 of everything above (a corrupt size is caught before decoding)
    payload    the segments, in order; each is one trimmed range-coded stream (coder.py) that
               starts with one scale-offset index per tile and channel, 4 bits each (codec, head);
               from version 12 an index may also be head.UNIFORM_TILE (the channel's symbols in
               that tile coded with a uniform table over its levels), coded with the frequency
               codec.UNIFORM_TILE_FREQ, the 16 scale offsets sharing the rest

Version 5 leaves out what the reader can derive (plane-group count, channels, segment counts,
the default tiling) or what is usually empty (metadata and name lengths): 7 bytes less on a
32x32 RGB file, whose header is then 28 bytes.  Versions 1-4 (still read) wrote, after the
mode byte (a plain index): tile, group, crc32, meta (always a length), a plane-group count,
and per group its channels (1 byte), model name (1-byte length + UTF-8; empty only from
version 4), digest (all 32 bytes in version 1), segment count and lengths; their segments are
constriction's little-endian 32-bit words, and version 1-2 segments carry no scale offsets.

Audio files (kind 2) share the first 7 bytes; then, from version 6 (see :func:`pack_audio_header`)::

    flags      1 byte   AUDIO_HAS_META: metadata follows (text tags, or a container/subtype pair
                        not in AUDIO_CONTAINERS); AUDIO_HAS_NAME: the model's name follows (a model
                        file, not a shipped model); AUDIO_HAS_PLAN: the chunking follows (else it is
                        the version's default, :func:`audio_default_plan`)
    channels   1 byte;  rate, frames (varints)
    samples    1 byte   bits 0-1: 8, 16 or 24 bits (0, 1, 2); bit 2: the low 8 bits of 24-bit
                        samples are coded uniformly; bits 3-7: wasted bits (trailing zero bits of
                        every model sample, 0-16)
    chunk, group        only with AUDIO_HAS_PLAN
    crc32      4 bytes  CRC-32 of the native samples as little-endian int32, frame-interleaved
    container  1 byte   index into AUDIO_CONTAINERS, only without AUDIO_HAS_META
    meta                only with AUDIO_HAS_META: varint length + zlib-compressed JSON (container
                        format, subtype, text tags)
    model      1-byte length + UTF-8 name only with AUDIO_HAS_NAME; the first 8 bytes of the
               model's SHA-256 (a shipped model is found by them, as in image headers)
    hcrc       4 bytes  CRC-32 of everything above
    segments   ceil(ceil(frames / chunk) / group) of them, each a varint byte length + bytes,
               so that a long recording is written and read one segment at a time; from
               version 5 a segment's range-coded stream is trimmed (coder.py); from version 7
               its linear predictors are Rice-coded (tapcode.py), before that 16 bits a tap;
               from version 9 the predictors follow the streams' coding modes (audio_modes.py);
               from version 11 a stream's mode may be verbatim (uniform tables)

The header of a 7.6 s 8 kHz mono WAV file is then 32 bytes.  Versions 1-5 wrote, after the kind byte: channels
(1 byte), rate, frames, bits, wasted and low bits (1 byte each), chunk, group, crc32, meta
(always), the model's name and its whole 32-byte SHA-256, hcrc: 125 bytes for that file.
Versions 6 and 7 write image files exactly as version 5 did; version 8 too, unless a channel's
level set pays for itself (codec.choose_level_sets); versions 9, 10 and 11 change audio
segments only; version 12 changes image segments (their offset indices' table, so every image
file's bytes) and writes audio as version 11; version 13 writes images as version 12 unless a
plane group's calibration pays for itself (calibration.fit), and audio as version 11; version 14
Rice-codes the calibration values at a precision the encoder chooses (IMAGE_LAYOUT_VERSION).

Parsing checks every size against limits and against the bytes present before anything large
is allocated; any inconsistency raises :class:`FormatError`.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field

import torch

from .bitio import BitReader, BitWriter, rice_bits
from .errors import FormatError
from .media import coded_planes
from .plan import TilePlan, default_plan

MAGIC = b"\x8bARC"
FORMAT_VERSION = 14
#: versions this reader parses (version 1: 32-byte model digests in image headers)
READ_VERSIONS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14)
#: from this version on, each image segment starts with its tiles' scale-offset indices
ADAPTIVE_SCALES_VERSION = 3
#: from this version on, an image header names no shipped model: its digest identifies it
UNNAMED_SHIPPED_VERSION = 4
#: from this version on, derivable header fields are left out and payload streams are trimmed
COMPACT_VERSION = 5
#: from this version on, audio headers are compact (a shipped model by its digest alone, common
#: containers as one byte, the default chunking left out)
AUDIO_COMPACT_VERSION = 6
#: from this version on, an audio segment's linear predictors are Rice-coded at a precision the
#: encoder chooses per stream (tapcode.py); before, every tap took 16 bits
CODED_TAPS_VERSION = 7
#: from this version on, an image plane group may carry the set of levels each channel uses
#: (HAS_LEVELS); the coder then gives the levels outside it no probability beyond the minimum
LEVEL_SETS_VERSION = 8
#: from this version on, each audio segment starts with its streams' coding modes
#: (audio_modes.py): whether a channel uses the one before it, and streams coded without symbols
STREAM_MODES_VERSION = 9
#: from this version on, the encoder chooses each audio stream's predictor order (2 to 128
#: taps; tapcode.LPC_ORDERS) and stores it with the taps; before, every stream had the model's
LPC_ORDERS_VERSION = 10
#: from this version on, an audio stream may be coded verbatim (audio_modes.VERBATIM)
VERBATIM_VERSION = 11
#: from this version on, an image tile's channel may be coded with a uniform table (its scale-
#: offset index head.UNIFORM_TILE, coded among the offsets with a small frequency)
UNIFORM_TILES_VERSION = 12
#: from this version on, an image plane group may carry a calibration of its model's output
#: parameters (HAS_CALIBRATION; calibration.py)
CALIBRATION_VERSION = 13
#: from this version on, a calibration's values are Rice-coded at a precision the encoder
#: chooses (:func:`pack_calibration`); before, each was a zigzag varint
CODED_CALIBRATION_VERSION = 14
#: the last version that changed how image files are written (later ones write the same bytes
#: apart from the version byte)
IMAGE_LAYOUT_VERSION = CODED_CALIBRATION_VERSION
#: flags in the mode byte of a compact (version 5) image header
MODE_BITS = 0x07
HAS_META = 0x08
HAS_NAMES = 0x10
HAS_PLAN = 0x20
HAS_LEVELS = 0x40  # version 8
HAS_CALIBRATION = 0x80  # version 13
#: most parameters a calibration may have (a model's output parameters: 50 for 5-mixture RGB)
MAX_CALIBRATION = 1 << 10
#: largest magnitude of a calibration value a header may hold (calibration.py checks its own ranges)
MAX_CALIBRATION_VALUE = 1 << 15
#: bits of a version-14 calibration's shifts (pack_calibration)
CALIBRATION_SHIFT_BITS = 4
#: bytes of the model's SHA-256 recorded in an image header (version 2)
IMAGE_DIGEST_BYTES = 8
#: flags in the first byte of a compact (version 6) audio header
AUDIO_HAS_META = 0x01
AUDIO_HAS_NAME = 0x02
AUDIO_HAS_PLAN = 0x04
#: the chunking an audio header of versions 6-9 leaves out: frames per chunk, chunks per segment
#: (audio_codec); from version 10 (longer predictors, so longer chunks) the chunk is 8192
AUDIO_DEFAULT_CHUNK = 4096
AUDIO_DEFAULT_GROUP = 32
AUDIO_DEFAULT_CHUNK_V10 = 8192
#: (container format, subtype) pairs a compact audio header writes as one byte (their index)
AUDIO_CONTAINERS = (("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "PCM_U8"), ("FLAC", "PCM_16"),
                    ("FLAC", "PCM_24"), ("FLAC", "PCM_S8"), ("AIFF", "PCM_16"), ("AIFF", "PCM_24"),
                    ("AIFF", "PCM_S8"))
AUDIO_BITS = (8, 16, 24)
KIND_IMAGE = 1
KIND_AUDIO = 2
MAX_FRAMES = 1 << 40
MAX_SEGMENT = 1 << 30
MODES = ("L", "LA", "RGB", "RGBA", "P", "1")
MAX_SIDE = 1 << 16
MAX_PIXELS = 1 << 28
MAX_META = 1 << 24


@dataclass
class PlaneGroup:
    channels: int
    model_name: str  # "" for a shipped model (version 4): the digest identifies it
    model_digest: bytes  # the model's SHA-256, or its first IMAGE_DIGEST_BYTES as read from a file
    segments: list[bytes] = field(default_factory=list)
    #: per channel, the levels it uses as a bit mask (bit v: level v occurs), or None for all
    #: 256; empty when the file restricts no channel (version 8, :func:`pack_level_sets`)
    levels: list[int | None] = field(default_factory=list)
    #: (gains, offsets) of the model's output parameters (version 13, calibration.py), or None
    calibration: tuple[tuple[int, ...], tuple[int, ...]] | None = None


@dataclass
class Header:
    scheme: int
    height: int
    width: int
    mode: str
    tile: int
    group: int
    crc32: int
    meta: dict
    planes: list[PlaneGroup]
    version: int = FORMAT_VERSION  # the file's format version (as read)


def _varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


class _Reader:
    """Reads from bytes or from a binary file object (``size``: bytes left in the stream)."""

    def __init__(self, data, size: int | None = None):
        self.stream = None if isinstance(data, (bytes, bytearray, memoryview)) else data
        self.data = data if self.stream is None else b""
        self.size = len(data) if self.stream is None else size
        self.pos = 0
        self.recording: bytearray | None = None  # when set, every byte taken is appended to it

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.size:
            raise FormatError("file is truncated")
        if self.stream is None:
            b = self.data[self.pos:self.pos + n]
        else:
            b = self.stream.read(n)
            if len(b) != n:
                raise FormatError("file is truncated")
        self.pos += n
        if self.recording is not None:
            self.recording += b
        return b

    def byte(self) -> int:
        return self.take(1)[0]

    def varint(self, limit: int) -> int:
        n, shift = 0, 0
        while True:
            b = self.byte()
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 63:
                raise FormatError("corrupt header (bad integer)")
        if n > limit:
            raise FormatError(f"corrupt header (value {n} exceeds {limit})")
        return n


def _pack_meta(meta: dict) -> bytes:
    return zlib.compress(json.dumps(meta, separators=(",", ":"), sort_keys=True).encode(), 9) if meta else b""


def pack(h: Header) -> bytes:
    """The image file of header ``h`` and its planes' segments, in format FORMAT_VERSION."""
    if FORMAT_VERSION < COMPACT_VERSION:
        return _pack_v1_to_v4(h)
    groups = coded_planes(h.mode, h.meta)
    plan = TilePlan(h.height, h.width, h.tile, h.group)
    if [c for _, c in groups] != [p.channels for p in h.planes]:
        raise ValueError("plane groups do not match the image mode")
    if any(len(p.segments) != len(plan.groups()) for p in h.planes):
        raise ValueError("segment counts do not match the tiling")
    meta = _pack_meta(h.meta)
    named = any(p.model_name for p in h.planes)
    custom = plan != default_plan(h.height, h.width)
    leveled = any(m is not None for p in h.planes for m in p.levels)
    if leveled and FORMAT_VERSION < LEVEL_SETS_VERSION:
        raise ValueError(f"level sets need format version {LEVEL_SETS_VERSION}")
    calibrated = any(p.calibration is not None for p in h.planes)
    if calibrated and FORMAT_VERSION < CALIBRATION_VERSION:
        raise ValueError(f"calibrations need format version {CALIBRATION_VERSION}")
    flags = MODES.index(h.mode) | (HAS_META if meta else 0) | (HAS_NAMES if named else 0) \
        | (HAS_PLAN if custom else 0) | (HAS_LEVELS if leveled else 0) | (HAS_CALIBRATION if calibrated else 0)
    out = bytearray(MAGIC)
    out += bytes([FORMAT_VERSION, h.scheme, KIND_IMAGE])
    out += _varint(h.height) + _varint(h.width) + bytes([flags])
    if custom:
        out += _varint(h.tile) + _varint(h.group)
    out += (h.crc32 & 0xFFFFFFFF).to_bytes(4, "little")
    if meta:
        out += _varint(len(meta)) + meta
    for p in h.planes:
        out += _model_id(p, named)
        if leveled:
            out += pack_level_sets(p.levels, p.channels)
        if calibrated:
            out += pack_calibration(*(p.calibration or ((), ())))
        out += b"".join(_varint(len(s)) for s in p.segments)
    out += zlib.crc32(out).to_bytes(4, "little")
    for p in h.planes:
        for s in p.segments:
            out += s
    return bytes(out)


def _model_id(p: PlaneGroup, named: bool) -> bytes:
    name = p.model_name.encode()
    if len(name) > 255 or len(p.model_digest) < IMAGE_DIGEST_BYTES:
        raise ValueError("model name too long or digest too short")
    return (bytes([len(name)]) + name if named else b"") + p.model_digest[:IMAGE_DIGEST_BYTES]


def pack_level_sets(levels: list[int | None], channels: int) -> bytes:
    """A plane group's level sets (version 8): one byte whose bit c says channel c has a set;
    then for each such channel its lowest and highest level (1 byte each) and a bitmap of the
    levels from the lowest to the highest, 8 to a byte, least significant bit first.

    ``levels``: one 256-bit mask or None per channel (or an empty list: no channel restricted).
    """
    levels = list(levels) or [None] * channels
    if len(levels) != channels:
        raise ValueError("one level set (or None) per channel")
    present = 0
    body = bytearray()
    for c, mask in enumerate(levels):
        if mask is None:
            continue
        if not 0 < mask < 1 << 256:
            raise ValueError("a level set is a non-empty 256-bit mask")
        lo, hi = (mask & -mask).bit_length() - 1, mask.bit_length() - 1
        present |= 1 << c
        body += bytes([lo, hi]) + (mask >> lo).to_bytes((hi - lo) // 8 + 1, "little")
    return bytes([present]) + bytes(body)


def _zigzag(n: int) -> bytes:
    return _varint(2 * n if n >= 0 else -2 * n - 1)


def pack_calibration(gains: tuple[int, ...], offsets: tuple[int, ...], version: int | None = None) -> bytes:
    """A plane group's calibration in format ``version`` (None: FORMAT_VERSION): the parameter
    count P (varint; 0: none), then

    - version 13: the P gains and the P offsets as zigzag varints (0, -1, 1, -2, ... -> 0, 1, 2, 3);
    - version 14: bits (bitio.py), padded to a byte: for the gains, then for the offsets, a 4-bit
      shift s (the trailing zero bits all P values share, at most 15) and the P values >> s,
      Rice-coded.  The encoder rounds the values to the precision that pays (calibration.fit),
      so a calibration of 50 parameters took 92-117 bytes instead of 135-171 on held-out
      256x256 crops (README, Calibration)."""
    if len(gains) != len(offsets) or len(gains) > MAX_CALIBRATION:
        raise ValueError("a calibration has one gain and one offset per parameter")
    if any(abs(v) > MAX_CALIBRATION_VALUE for v in (*gains, *offsets)):
        raise ValueError("calibration value out of range")
    version = FORMAT_VERSION if version is None else version
    if version < CODED_CALIBRATION_VERSION or not gains:
        return _varint(len(gains)) + b"".join(_zigzag(v) for v in (*gains, *offsets))
    w = BitWriter()
    for values in (gains, offsets):
        shift = _common_shift(values)
        q = torch.tensor(values, dtype=torch.int64).view(1, -1) >> shift
        w.put(shift, CALIBRATION_SHIFT_BITS)
        w.rice(q.flatten().tolist(), int(rice_bits(q)[1][0]))
    return _varint(len(gains)) + w.bytes()


def _common_shift(values: tuple[int, ...]) -> int:
    """The trailing zero bits all ``values`` share (at most 15; 0 when all are zero)."""
    bits = 0
    for v in values:
        bits |= v
    return min((bits & -bits).bit_length() - 1, (1 << CALIBRATION_SHIFT_BITS) - 1) if bits else 0


def _read_calibration(r: _Reader, version: int) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    n = r.varint(MAX_CALIBRATION)
    if n == 0:
        return None
    if version < CODED_CALIBRATION_VERSION:
        values = []
        for _ in range(2 * n):
            z = r.varint(2 * MAX_CALIBRATION_VALUE)
            values.append(z >> 1 if not z & 1 else -(z >> 1) - 1)
        return tuple(values[:n]), tuple(values[n:])
    bits = BitReader(r.byte, "header (calibration)")
    gains, offsets = [], []
    for values in (gains, offsets):
        shift = bits.get(CALIBRATION_SHIFT_BITS)
        values += (v << shift for v in bits.rice(n, MAX_CALIBRATION_VALUE >> shift))
    return tuple(gains), tuple(offsets)


def _read_level_sets(r: _Reader, channels: int) -> list[int | None]:
    present = r.byte()
    if present >> channels:
        raise FormatError("corrupt header (level sets)")
    levels: list[int | None] = []
    for c in range(channels):
        if not present >> c & 1:
            levels.append(None)
            continue
        lo, hi = r.byte(), r.byte()
        if lo > hi:
            raise FormatError("corrupt header (level sets)")
        bits = int.from_bytes(r.take((hi - lo) // 8 + 1), "little")
        if not bits & 1 or bits.bit_length() != hi - lo + 1:  # canonical: lo and hi are used
            raise FormatError("corrupt header (level sets)")
        levels.append(bits << lo)
    return levels


def _pack_v1_to_v4(h: Header) -> bytes:
    """Versions 1-4 (tests write them to check that they are still read)."""
    meta = _pack_meta(h.meta)
    out = bytearray(MAGIC)
    out += bytes([FORMAT_VERSION, h.scheme, KIND_IMAGE])
    out += _varint(h.height) + _varint(h.width) + bytes([MODES.index(h.mode)])
    out += _varint(h.tile) + _varint(h.group)
    out += (h.crc32 & 0xFFFFFFFF).to_bytes(4, "little")
    out += _varint(len(meta)) + meta
    out.append(len(h.planes))
    for p in h.planes:
        out += bytes([p.channels]) + _model_id(p, named=True)
        out += _varint(len(p.segments)) + b"".join(_varint(len(s)) for s in p.segments)
    out += zlib.crc32(out).to_bytes(4, "little")
    for p in h.planes:
        for s in p.segments:
            out += s
    return bytes(out)


def unpack(data: bytes) -> Header:
    """Parse and validate an .arc file; raises FormatError."""
    r = _Reader(data)
    if len(data) < 4 or r.take(4) != MAGIC:
        raise FormatError("not an arcompress file (bad magic bytes)")
    version = r.byte()
    if version not in READ_VERSIONS:
        raise FormatError(f"unsupported format version {version} (this arcompress reads "
                          f"{', '.join(map(str, READ_VERSIONS))})")
    scheme, kind = r.byte(), r.byte()
    if kind == KIND_AUDIO:
        raise FormatError("this is an audio .arc file")
    if kind != KIND_IMAGE:
        raise FormatError(f"unsupported media kind {kind}")
    height, width = r.varint(MAX_SIDE), r.varint(MAX_SIDE)
    if height == 0 or width == 0 or height * width > MAX_PIXELS:
        raise FormatError(f"corrupt header (image size {width}x{height})")
    flags = r.byte()
    compact = version >= COMPACT_VERSION
    mode_idx = flags & MODE_BITS if compact else flags
    known = MODE_BITS | HAS_META | HAS_NAMES | HAS_PLAN | (HAS_LEVELS if version >= LEVEL_SETS_VERSION else 0) \
        | (HAS_CALIBRATION if version >= CALIBRATION_VERSION else 0)
    if mode_idx >= len(MODES) or (compact and flags & ~known):
        raise FormatError("corrupt header (unknown image mode)")
    mode = MODES[mode_idx]
    if compact and not flags & HAS_PLAN:
        plan = default_plan(height, width)
        tile, group = plan.tile, plan.group
    else:
        tile, group = r.varint(MAX_SIDE), r.varint(MAX_PIXELS)
    if tile == 0 or group == 0:
        raise FormatError("corrupt header (tiling)")
    crc = int.from_bytes(r.take(4), "little")
    meta = _read_meta(r) if not compact or flags & HAS_META else {}
    if compact:
        channels = [c for _, c in coded_planes(mode, meta)]
        tiles = TilePlan(height, width, tile, group).count
        n_seg = -(-tiles // group)
        if n_seg * len(channels) > len(data):
            raise FormatError("file is truncated (more segments than bytes)")
    else:
        n_planes = r.byte()
        if not 1 <= n_planes <= 4:
            raise FormatError("corrupt header (plane groups)")
        channels = [None] * n_planes
    planes, lengths = [], []
    for ch in channels:
        if ch is None:
            ch = r.byte()
            if not 1 <= ch <= 4:
                raise FormatError("corrupt header (channels)")
        name = ""
        if not compact or flags & HAS_NAMES:
            try:
                name = r.take(r.byte()).decode()
            except UnicodeDecodeError:
                raise FormatError("corrupt header (model name)") from None
            if not name and version < UNNAMED_SHIPPED_VERSION:
                raise FormatError("corrupt header (model name)")
        digest = r.take(32 if version == 1 else IMAGE_DIGEST_BYTES)
        levels = _read_level_sets(r, ch) if compact and flags & HAS_LEVELS else []
        calibration = _read_calibration(r, version) if compact and flags & HAS_CALIBRATION else None
        if not compact:
            n_seg = r.varint(len(data))
        lengths.append([r.varint(len(data)) for _ in range(n_seg)])
        planes.append(PlaneGroup(ch, name, digest, levels=levels, calibration=calibration))
    header_end = r.pos
    if int.from_bytes(r.take(4), "little") != zlib.crc32(data[:header_end]):
        raise FormatError("corrupt header (CRC mismatch)")
    if sum(map(sum, lengths)) != len(data) - r.pos:
        raise FormatError("file is truncated or has trailing bytes (payload size mismatch)")
    for p, ls in zip(planes, lengths):
        p.segments = [r.take(n) for n in ls]
    return Header(scheme, height, width, mode, tile, group, crc, meta, planes, version)


def _read_meta(r: _Reader) -> dict:
    meta_raw = r.take(r.varint(MAX_META))
    try:
        meta = {}
        if meta_raw:
            inflater = zlib.decompressobj()
            text = inflater.decompress(meta_raw, MAX_META)
            if inflater.unconsumed_tail or not inflater.eof:
                raise ValueError
            meta = json.loads(text)
        if not isinstance(meta, dict):
            raise ValueError
    except (zlib.error, ValueError, UnicodeDecodeError):
        raise FormatError("corrupt header (metadata)") from None
    return meta


def peek_kind(prefix: bytes) -> int:
    """The media kind of an .arc file from its first 7 bytes; FormatError if it is not one."""
    if len(prefix) < 4 or prefix[:4] != MAGIC:
        raise FormatError("not an arcompress file (bad magic bytes)")
    if len(prefix) < 7:
        raise FormatError("file is truncated")
    if prefix[4] not in READ_VERSIONS:
        raise FormatError(f"unsupported format version {prefix[4]} (this arcompress reads "
                          f"{', '.join(map(str, READ_VERSIONS))})")
    return prefix[6]


@dataclass
class AudioHeader:
    scheme: int
    channels: int
    rate: int
    frames: int
    bits: int
    wasted: int
    low_bits: int
    chunk: int
    group: int
    crc32: int
    meta: dict
    model_name: str
    model_digest: bytes
    version: int = FORMAT_VERSION  # the file's format version (as read): from 5, streams are trimmed

    def segment_count(self) -> int:
        chunks = -(-self.frames // self.chunk)
        return -(-chunks // self.group)


def audio_default_plan(version: int) -> tuple[int, int]:
    """(frames per chunk, chunks per segment) that an audio header of format ``version`` leaves out."""
    chunk = AUDIO_DEFAULT_CHUNK_V10 if version >= LPC_ORDERS_VERSION else AUDIO_DEFAULT_CHUNK
    return chunk, AUDIO_DEFAULT_GROUP


def pack_audio_header(h: AudioHeader) -> bytes:
    """The header of an audio file in format FORMAT_VERSION.  From version 6 an empty
    ``h.model_name`` means a shipped model (its digest identifies it)."""
    if FORMAT_VERSION < AUDIO_COMPACT_VERSION:
        return _pack_audio_header_v1_to_v5(h)
    name = h.model_name.encode()
    if len(name) > 255 or len(h.model_digest) < IMAGE_DIGEST_BYTES:
        raise ValueError("model name too long or digest too short")
    pair = (h.meta.get("format"), h.meta.get("subtype"))
    plain = pair in AUDIO_CONTAINERS and not h.meta.get("tags") and set(h.meta) <= {"format", "subtype", "tags"}
    custom = (h.chunk, h.group) != audio_default_plan(FORMAT_VERSION)
    flags = (0 if plain else AUDIO_HAS_META) | (AUDIO_HAS_NAME if name else 0) | (AUDIO_HAS_PLAN if custom else 0)
    out = bytearray(MAGIC)
    out += bytes([FORMAT_VERSION, h.scheme, KIND_AUDIO, flags, h.channels])
    out += _varint(h.rate) + _varint(h.frames)
    out.append(AUDIO_BITS.index(h.bits) | (4 if h.low_bits else 0) | h.wasted << 3)
    if custom:
        out += _varint(h.chunk) + _varint(h.group)
    out += (h.crc32 & 0xFFFFFFFF).to_bytes(4, "little")
    if plain:
        out.append(AUDIO_CONTAINERS.index(pair))
    else:
        meta = _pack_meta(h.meta)
        out += _varint(len(meta)) + meta
    if name:
        out += bytes([len(name)]) + name
    out += h.model_digest[:IMAGE_DIGEST_BYTES]
    out += zlib.crc32(out).to_bytes(4, "little")
    return bytes(out)


def _pack_audio_header_v1_to_v5(h: AudioHeader) -> bytes:
    """Versions 1-5 (tests write them to check that they are still read)."""
    meta = _pack_meta(h.meta)  # never empty: it always holds the container and subtype
    name = h.model_name.encode()
    if len(name) > 255 or len(h.model_digest) != 32:
        raise ValueError("model name too long or digest not SHA-256")
    out = bytearray(MAGIC)
    out += bytes([FORMAT_VERSION, h.scheme, KIND_AUDIO, h.channels])
    out += _varint(h.rate) + _varint(h.frames) + bytes([h.bits, h.wasted, h.low_bits])
    out += _varint(h.chunk) + _varint(h.group) + (h.crc32 & 0xFFFFFFFF).to_bytes(4, "little")
    out += _varint(len(meta)) + meta + bytes([len(name)]) + name + h.model_digest
    out += zlib.crc32(out).to_bytes(4, "little")
    return bytes(out)


def pack_segment(segment: bytes) -> bytes:
    return _varint(len(segment)) + segment


def read_audio_header(r: "_Reader") -> AudioHeader:
    """Parse an audio header from a reader positioned at the start of the file."""
    r.recording = start = bytearray()
    kind = peek_kind(r.take(7))
    if kind != KIND_AUDIO:
        raise FormatError("this is not an audio .arc file")
    version, scheme = start[4], start[5]
    if version >= AUDIO_COMPACT_VERSION:
        flags, channels = r.byte(), r.byte()
        if flags & ~(AUDIO_HAS_META | AUDIO_HAS_NAME | AUDIO_HAS_PLAN):
            raise FormatError("corrupt header (audio flags)")
        rate, frames = r.varint(1 << 31), r.varint(MAX_FRAMES)
        samples = r.byte()
        if samples & 3 == 3:
            raise FormatError("corrupt header (audio parameters)")
        bits, low_bits, wasted = AUDIO_BITS[samples & 3], 8 if samples & 4 else 0, samples >> 3
        chunk, group = audio_default_plan(version)
        if flags & AUDIO_HAS_PLAN:
            chunk, group = r.varint(1 << 24), r.varint(1 << 24)
        crc = int.from_bytes(r.take(4), "little")
        if flags & AUDIO_HAS_META:
            meta = _read_meta(r)
        else:
            pair = r.byte()
            if pair >= len(AUDIO_CONTAINERS):
                raise FormatError("corrupt header (audio container)")
            meta = {"format": AUDIO_CONTAINERS[pair][0], "subtype": AUDIO_CONTAINERS[pair][1], "tags": {}}
        name_raw = r.take(r.byte()) if flags & AUDIO_HAS_NAME else b""
        digest = r.take(IMAGE_DIGEST_BYTES)
    else:
        channels = r.byte()
        rate, frames = r.varint(1 << 31), r.varint(MAX_FRAMES)
        bits, wasted, low_bits = r.byte(), r.byte(), r.byte()
        chunk, group = r.varint(1 << 24), r.varint(1 << 24)
        crc = int.from_bytes(r.take(4), "little")
        meta = _read_meta(r)
        name_raw = r.take(r.byte())
        digest = r.take(32)
    r.recording = None
    if int.from_bytes(r.take(4), "little") != zlib.crc32(bytes(start)):
        raise FormatError("corrupt header (CRC mismatch)")
    if not 1 <= channels or rate == 0 or bits not in (8, 16, 24) or wasted > 16 \
            or low_bits not in (0, 8) or (low_bits and bits != 24) or chunk == 0 or group == 0:
        raise FormatError("corrupt header (audio parameters)")
    try:
        name = name_raw.decode()
    except UnicodeDecodeError:
        raise FormatError("corrupt header (model name)") from None
    if version >= AUDIO_COMPACT_VERSION and flags & AUDIO_HAS_NAME and not name:
        raise FormatError("corrupt header (model name)")
    return AudioHeader(scheme, channels, rate, frames, bits, wasted, low_bits, chunk, group, crc,
                       meta, name, digest, version)


def read_segment(r: "_Reader") -> bytes:
    return r.take(r.varint(MAX_SEGMENT))


def audio_reader(source, size: int | None = None) -> "_Reader":
    """A reader over .arc bytes or an open binary file of ``size`` bytes."""
    return _Reader(source, size)
