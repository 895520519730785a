"""Audio encode / decode: chunks -> exact WaveNet -> two-stage tables -> coder -> container.

A recording is cut into chunks of ``chunk`` frames that are coded independently (each starts
with no past), ``group`` chunks per payload segment; the decoder runs the chunks of a segment in
lock-step, all channels together, and segments in parallel processes.  Segments are read and
written one at a time, so memory does not grow with the length of the recording.

A segment is the linear predictor of each of its streams (chunk-major, channel-minor; chosen by
the encoder), then the range-coded symbols.  From format version 7 the predictors are
Rice-coded at a precision the encoder chooses per stream (tapcode.py); versions 1-6 wrote one
byte per stream, its taps' fractional bits, then ``lpc`` int16 little-endian taps per stream,
then (models with ``lpc_cross`` > 0) ``lpc_cross`` int16 taps on the reference channel per
stream that has one.
Symbol order (the decoder's): for each time step t, for each channel c, the high bytes of all
chunks that have a sample at t, then their low bytes (when the samples have fewer than 8 wasted
low bits), then, for 24-bit audio, the 8 bits below the model's 16.  The tables are the model's,
or (format 11 on) uniform for a stream the encoder codes verbatim because the model would take
more bits than the samples' own width (:func:`choose_verbatim`).
"""

from __future__ import annotations

import multiprocessing
import os
import zlib
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import container, zoo
from . import fixedpoint as fp
from .audio_head import (BYTE_FREQS, LPC_MAX_BITS, MEAN_BITS, ExactAudioHead, Predictor, choose_lpc, chunk_lpc,
                         exact_lpc_step, residual)
from .audio_modes import (EXACT, REF_FULL, REF_MASK, REF_NONE, REF_TAPS, VERBATIM, coupled, exact, pack_modes,
                          unpack_modes, uses_reference, verbatim)
from .audiofile import AudioInfo, to_model
from .coder import DecodeError, Decoder, Encoder
from .codec import _device, _ops_on, _single_thread
from .head import exact_bits
from .tapcode import LPC_ORDERS, pack_taps, unpack_taps
from .wavenet import CachedDecoder, embed_fixed, embed_step, forward

DEFAULT_CHUNK, DEFAULT_GROUP = container.audio_default_plan(container.FORMAT_VERSION)
#: frames per chunk by sample rate, as bands for zoo.rate_band.  With predictor orders chosen
#: per stream (format 10), longer chunks pay on music: on music training files at 44.1 kHz 8192
#: frames cost fewer bits than 4096 (16384 saves 0.6 % more but halves the streams a short file
#: decodes in lock-step); on held-out 8 kHz speech prompts 1024 still cost fewer than 2048; see
#: README, "Audio"
RATE_CHUNKS = ((zoo.SPEECH_MAX_RATE, 1024), (None, DEFAULT_CHUNK))
#: rows (time steps x channels x chunks) of head tables built at once
HEAD_ROWS = 512
#: streams (chunks x channels) one decoding process steps together at most: a step's cost is
#: mostly fixed (one process, 48 kHz stereo in chunks of 2048: 6.2 ms for 64 streams, 8.3 ms for 128,
#: 14.0 ms for 256), so a process decodes several segments in one lock-step (README, "Audio")
LOCKSTEP_STREAMS = 128


@dataclass
class AudioEncodeStats:
    nll_bits: float = 0.0  # the exact model's ideal code length of all symbols
    payload_bytes: int = 0


def scan(blocks) -> tuple[int, int, int, bool]:
    """One pass over native blocks: (CRC-32, frames, OR of all samples' bits, any low byte set)."""
    crc, frames, bits_or, low = 0, 0, 0, False
    for b in blocks:
        crc = zlib.crc32(np.ascontiguousarray(b, dtype="<i4").tobytes(), crc)
        frames += len(b)
        bits_or |= int(np.bitwise_or.reduce(b, axis=None)) if b.size else 0
        low = low or bool((b & 255).any())
    return crc, frames, bits_or, low


def wasted_bits(bits_or: int, bits: int) -> int:
    """Trailing zero bits shared by every model sample (16 for digital silence)."""
    model_or = bits_or << (16 - bits) if bits <= 16 else (bits_or >> (bits - 16))
    model_or &= 0xFFFF
    if model_or == 0:
        return 16
    return (model_or & -model_or).bit_length() - 1


class _Layout:
    """Streams of one segment: B chunks x C channels, stream index b * C + c."""

    def __init__(self, frames: int, channels: int, chunk: int):
        self.B = max(1, -(-frames // chunk))
        self.C, self.N, self.frames = channels, min(chunk, max(frames, 1)), frames
        pos = torch.arange(self.B * self.N).view(self.B, self.N)
        self.inside = pos < frames  # (B, N)
        self.has_ref = (torch.arange(self.B * channels) % channels) > 0

    def lengths(self) -> torch.Tensor:
        """Samples inside the recording per stream (S,)."""
        return self.inside.sum(1).repeat_interleave(self.C)

    def streams(self, m: np.ndarray) -> torch.Tensor:
        """(frames, C) model samples -> (B*C, N) int64, zero-padded."""
        x = torch.zeros(self.B * self.N, self.C, dtype=torch.int64)
        x[:self.frames] = torch.from_numpy(m)
        return x.view(self.B, self.N, self.C).permute(0, 2, 1).reshape(self.B * self.C, self.N)

    def refs(self, streams: torch.Tensor) -> torch.Tensor:
        """Each stream's reference channel (the previous channel of its chunk; zeros for c = 0)."""
        ref = torch.roll(streams, 1, 0)
        ref[~self.has_ref] = 0
        return ref


def coded_taps(version: int | None) -> bool:
    """Whether files of format ``version`` (None: the one written now) Rice-code their
    predictors (tapcode.py)."""
    return (container.FORMAT_VERSION if version is None else version) >= container.CODED_TAPS_VERSION


def ordered_taps(version: int | None) -> bool:
    """Whether files of format ``version`` (None: the one written now) choose each stream's
    predictor order (audio_head.choose_lpc) and store it."""
    return (container.FORMAT_VERSION if version is None else version) >= container.LPC_ORDERS_VERSION


def encoder_predictor(m: torch.Tensor, lengths: torch.Tensor, cfg, ref: torch.Tensor,
                      use_ref: torch.Tensor) -> Predictor:
    """The predictors the encoder stores for streams ``m`` (R, N) with ``lengths`` (R,) samples,
    taps on their reference channels ``ref`` (R, N) where ``use_ref`` (R,): the order chosen per
    stream (format 10 on), or the model's (``cfg.lpc``, earlier versions)."""
    if ordered_taps(None):
        return choose_lpc(m, lengths, ref, use_ref, cfg.lpc_cross)
    return chunk_lpc(m, lengths, cfg.lpc, ref, use_ref, cfg.lpc_cross, coded=coded_taps(None))


def pack_predictors(pred: Predictor, has_ref: torch.Tensor, version: int | None = None) -> bytes:
    """The predictors as a segment of format ``version`` (default: the one written now) stores
    them: Rice-coded (tapcode.py; with each stream's order from version 10), or (versions 1-6)
    shifts (one byte per stream), own taps (S x P int16), then the cross taps of the streams that
    have a reference channel."""
    if coded_taps(version):
        return pack_taps(pred.taps, pred.cross, pred.shift, has_ref, pred.orders if ordered_taps(version) else None)
    parts = [pred.shift.numpy().astype(np.uint8), pred.taps.numpy().astype("<i2")]
    if pred.cross.shape[1]:
        parts.append(pred.cross[has_ref].numpy().astype("<i2"))
    return b"".join(p.tobytes() for p in parts)


def unpack_predictors(payload: bytes, has_ref: torch.Tensor, order: int, cross: int,
                      version: int) -> tuple[Predictor, int]:
    """The predictors at the start of a segment payload of format ``version`` and their length
    in bytes."""
    if coded_taps(version):
        ordered = ordered_taps(version)
        taps, xt, shift, orders, size = unpack_taps(payload, has_ref, None if ordered else order, cross)
        return Predictor(taps, xt, shift, orders if ordered else None), size
    S, R = len(has_ref), int(has_ref.sum())
    size = S + 2 * S * order + 2 * R * cross
    if len(payload) < size:
        raise container.FormatError("file is truncated (segment shorter than its predictors)")
    shift = torch.from_numpy(np.frombuffer(payload, np.uint8, S).astype(np.int64))
    if int(shift.max()) > LPC_MAX_BITS:
        raise container.FormatError("corrupt segment (predictor shift)")
    taps = torch.from_numpy(np.frombuffer(payload, "<i2", S * order, S).astype(np.int64)).view(S, order)
    xt = torch.zeros(S, cross, dtype=torch.int64)
    if cross:
        xt[has_ref] = torch.from_numpy(np.frombuffer(payload, "<i2", R * cross, S + 2 * S * order)
                                       .astype(np.int64)).view(R, cross)
    return Predictor(taps, xt, shift), size


def _configure(model: zoo.ExactModel, ops, m: torch.Tensor, ref: torch.Tensor, use_ref: torch.Tensor,
               lengths: torch.Tensor, rate: int, device: torch.device, order: int | None = None):
    """The encoder's predictors, exact predictions (MEAN_BITS fractional bits, (R, N)) and
    network parameters ((R, 4K, N) int64) of streams ``m`` (R, N) whose reference channels are
    ``ref`` (R, N), taken only where ``use_ref`` (R,) is true.  Every stream's figures depend on
    that stream alone.  ``order``: every stream's predictor has that order (format 10 on; it
    must be in tapcode.LPC_ORDERS); None: :func:`encoder_predictor`'s."""
    cfg = model.config
    ref = torch.where(use_ref.view(-1, 1), ref, 0)
    if order is None:
        pred = encoder_predictor(m, lengths, cfg, ref, use_ref)
    else:
        pred = chunk_lpc(m, lengths, order, ref, use_ref, cfg.lpc_cross)
        pred.orders = torch.full((len(m),), order)
    lpc = pred.exact_prediction(m, ref)
    x = embed_fixed(m, residual(m, lpc), ref, use_ref, rate, model.ops.tables["mulaw"])
    return pred, lpc, forward(ops, x.to(device)).to(torch.int64).cpu()


def _stream_bits(head: ExactAudioHead, params: torch.Tensor, lpc: torch.Tensor, e_ref: torch.Tensor,
                 m: torch.Tensor, inside: torch.Tensor, step_bits: int) -> torch.Tensor:
    """The mixture's code length (bits, (R,) float64) of the samples of R streams, without the
    tables' rounding (ExactAudioHead.sample_bits): params (R, 4K, N), lpc and e_ref (R, N) at
    MEAN_BITS, m (R, N) the samples, inside (R, N) the samples that exist."""
    R, _, N = params.shape
    head.start(params.transpose(1, 2).reshape(R * N, -1), lpc.reshape(-1), e_ref.reshape(-1))
    return (head.sample_bits(m.reshape(-1), step_bits).view(R, N) * inside).sum(1)


def _tap_bits(pred: Predictor, with_cross: bool) -> torch.Tensor:
    """Bits (R,) float64 of each stream's Rice-coded predictor (tapcode.py), cross taps if
    ``with_cross``."""
    return pred.bits(torch.full((len(pred.shift),), with_cross)).to(torch.float64)


def _replace_rows(pred: Predictor, rows: torch.Tensor, other: Predictor, index: torch.Tensor) -> Predictor:
    """``pred`` with its streams ``rows`` replaced by ``other``'s streams ``index`` (the taps
    widened to the longer of the two orders)."""
    width = max(pred.order, other.order)
    taps = F.pad(pred.taps, (0, width - pred.order))
    taps[rows] = F.pad(other.taps[index], (0, width - other.order))
    cross, shift = pred.cross.clone(), pred.shift.clone()
    cross[rows], shift[rows] = other.cross[index], other.shift[index]
    orders = None
    if pred.orders is not None:
        orders = pred.orders.clone()
        orders[rows] = other.orders[index]
    return Predictor(taps, cross, shift, orders)


def choose_orders(model: zoo.ExactModel, ops, head: ExactAudioHead, lay: "_Layout", m: torch.Tensor,
                  pred: Predictor, lpc: torch.Tensor, params: torch.Tensor, step_bits: int, rate: int,
                  device: torch.device) -> Predictor:
    """Per stream, the predictor order the estimate chose (``pred``, :func:`encoder_predictor`)
    or the model's own (``model.config.lpc``, the order its network was trained with), whichever
    codes the stream in fewer bits with the reference channel used (mode 0): the exact
    mixture's mass at every sample (:func:`_stream_bits`) plus the predictor's bits.  The
    estimate knows nothing of the network, which on some speech codes the errors of its own
    order best.  The rows of ``lpc`` and ``params`` (see :func:`choose_modes`) of the streams
    that take the model's order are replaced in place; returns the predictors.  Channels are
    decided in order, as a channel's coupling reads the prediction of the channel before it.
    """
    order = model.config.lpc
    rows = (pred.orders != order).nonzero()[:, 0]  # only the streams whose order differs
    if order not in LPC_ORDERS or not len(rows):
        return pred
    p_m, l_m, q_m = _configure(model, ops, m[rows], lay.refs(m)[rows], lay.has_ref[rows], lay.lengths()[rows],
                               rate, device, order)
    inside = lay.inside.repeat_interleave(lay.C, 0)
    bits_est = pred.rows(rows).bits(lay.has_ref[rows]).to(torch.float64)
    bits_m = p_m.bits(lay.has_ref[rows]).to(torch.float64)
    for c in range(lay.C):
        sel = (rows % lay.C == c).nonzero()[:, 0]  # indices into rows
        r = rows[sel]
        if not len(r):
            continue
        e_ref = (m[r - 1] << MEAN_BITS) - lpc[r - 1] if c else torch.zeros_like(lpc[r])
        est = _stream_bits(head, params[r], lpc[r], e_ref, m[r], inside[r], step_bits) + bits_est[sel]
        own = _stream_bits(head, q_m[sel], l_m[sel], e_ref, m[r], inside[r], step_bits) + bits_m[sel]
        better = own < est
        if bool(better.any()):
            take, src = r[better], sel[better]
            pred = _replace_rows(pred, take, p_m, src)
            lpc[take], params[take] = l_m[src], q_m[src]
    return pred


def choose_modes(model: zoo.ExactModel, ops, head: ExactAudioHead, lay: "_Layout", m: torch.Tensor,
                 pred: Predictor, lpc: torch.Tensor, params: torch.Tensor, step_bits: int, rate: int,
                 device: torch.device) -> tuple[torch.Tensor, Predictor]:
    """The stream modes (audio_modes.py) of one segment, each chosen by its code length: the
    exact mixture's mass at every sample (:func:`_stream_bits`) plus the predictor's bits.

    ``pred``, ``lpc`` and ``params`` hold every stream's figures with the reference channel
    used (mode 0); the rows of ``lpc`` and ``params`` of the streams that are best coded
    without it are replaced in place, and the predictors are returned with the modes.  A
    stream whose predictor gives every sample exactly is coded without symbols.  The channels
    are decided in order, because a channel's coupling reads the prediction of the channel
    before it, which that channel's mode sets.
    """
    inside = lay.inside.repeat_interleave(lay.C, 0)  # (S, N)
    some = inside.any(1)
    exact_full = ((residual(m, lpc) == 0) | ~inside).all(1) & some
    modes = torch.where(exact_full, EXACT, 0).to(torch.int64)
    rows = lay.has_ref.nonzero()[:, 0]
    if not len(rows):
        return modes, pred
    p_b, l_b, q_b = _configure(model, ops, m[rows], lay.refs(m)[rows], torch.zeros(len(rows), dtype=torch.bool),
                               lay.lengths()[rows], rate, device)
    exact_none = ((residual(m[rows], l_b) == 0) | ~inside[rows]).all(1) & some[rows]
    taps_full = _tap_bits(pred.rows(rows), True)
    taps_none = _tap_bits(p_b, False)
    for c in range(1, lay.C):
        sel = rows % lay.C == c
        r = rows[sel]
        e_full = (m[r - 1] << MEAN_BITS) - lpc[r - 1]
        zero = torch.zeros_like(e_full)
        cost = torch.stack([
            _stream_bits(head, params[r], lpc[r], e_full, m[r], inside[r], step_bits) + taps_full[sel],
            _stream_bits(head, q_b[sel], l_b[sel], zero, m[r], inside[r], step_bits) + taps_none[sel],
            _stream_bits(head, params[r], lpc[r], zero, m[r], inside[r], step_bits) + taps_full[sel]], 1)
        choice = torch.tensor([REF_FULL, REF_NONE, REF_TAPS])[cost.argmin(1)]
        choice = torch.where(exact_full[r], EXACT | REF_FULL,
                             torch.where(exact_none[sel], EXACT | REF_NONE, choice))
        modes[r] = choice
        alone = (choice & REF_MASK) == REF_NONE
        if bool(alone.any()):
            ra, sa = r[alone], sel.nonzero()[:, 0][alone]
            pred = _replace_rows(pred, ra, p_b, sa)
            lpc[ra], params[ra] = l_b[sa], q_b[sa]
    return modes, pred


def choose_verbatim(head: ExactAudioHead, lay: "_Layout", m: torch.Tensor, modes: torch.Tensor,
                    lpc: torch.Tensor, params: torch.Tensor, e_ref: torch.Tensor, step_bits: int) -> torch.Tensor:
    """``modes`` with ``VERBATIM`` set on every stream (not ``EXACT``) that the model would code
    in more bits (:func:`_stream_bits`, with the chosen modes' ``lpc``, ``params`` and
    ``e_ref``) than its samples' own ``16 - step_bits`` bits each.  A stream's tables do not
    change the figures of any other stream, so each is decided alone."""
    inside = lay.inside.repeat_interleave(lay.C, 0)  # (S, N)
    rows = (~exact(modes) & inside.any(1)).nonzero()[:, 0]
    if not len(rows):
        return modes
    bits = _stream_bits(head, params[rows], lpc[rows], e_ref[rows], m[rows], inside[rows], step_bits)
    raw = inside[rows].sum(1).to(torch.float64) * (16 - step_bits)
    out = modes.clone()
    out[rows[bits > raw]] |= VERBATIM
    return out


def encode_segment(model: zoo.ExactModel, native: np.ndarray, info: AudioInfo, wasted: int, low_bits: int,
                   chunk: int, device: torch.device, stats: AudioEncodeStats) -> bytes:
    """Code one segment: native samples (frames, C) -> payload bytes."""
    ops = model.ops if device.type == "cpu" else _ops_on(model, device)
    lay = _Layout(len(native), info.channels, chunk)
    m = lay.streams(to_model(native, info.bits))
    ref = lay.refs(m)
    pred, lpc, params = _configure(model, ops, m, ref, lay.has_ref, lay.lengths(), info.rate, device)
    step_bits = min(wasted, 8)
    head = ExactAudioHead(model.ops.tables, model.config.mixtures)  # the head runs on the CPU
    if ordered_taps(None):
        pred = choose_orders(model, ops, head, lay, m, pred, lpc, params, step_bits, info.rate, device)
    modes = torch.zeros(len(m), dtype=torch.int64)
    if container.FORMAT_VERSION >= container.STREAM_MODES_VERSION:
        modes, pred = choose_modes(model, ops, head, lay, m, pred, lpc, params, step_bits, info.rate, device)
    use_ref = uses_reference(modes, lay.has_ref)
    e_ref = torch.where(coupled(modes, lay.has_ref).view(-1, 1), (ref << MEAN_BITS) - torch.roll(lpc, 1, 0), 0)
    if container.FORMAT_VERSION >= container.VERBATIM_VERSION:
        modes = choose_verbatim(head, lay, m, modes, lpc, params, e_ref, step_bits)
    B, C, N = lay.B, lay.C, lay.N
    # rows in decoding order: (t, c, b); a: (S, N) or (S, N, X)
    order = lambda a: a.reshape(B, C, N, -1).permute(2, 1, 0, 3).reshape(N * C * B, -1)  # noqa: E731
    p_rows, lpc_rows, e_rows = order(params.transpose(1, 2)), order(lpc)[:, 0], order(e_ref)[:, 0]
    u_rows = order(m)[:, 0] + 32768
    ins_rows = lay.inside.t().reshape(N, 1, B).expand(N, C, B).reshape(-1)
    coded_rows = ins_rows & ~order(exact(modes).view(-1, 1).expand(-1, N))[:, 0]
    verb_rows = order(verbatim(modes).view(-1, 1).expand(-1, N))[:, 0]
    if not bool(verb_rows.any()):
        verb_rows = None
    low_rows = order(lay.streams(native.astype(np.int64) & 255))[:, 0] if low_bits else None
    enc = Encoder()
    per = max(C * B, (HEAD_ROWS // (C * B)) * C * B)  # whole time steps per block
    for s in range(0, len(p_rows), per):
        e = min(s + per, len(p_rows))
        head.start(p_rows[s:e], lpc_rows[s:e], e_rows[s:e], None if verb_rows is None else verb_rows[s:e])
        u = u_rows[s:e]
        tables, syms, keeps = [head.high_freqs()], [u >> 8], [coded_rows[s:e]]
        if step_bits < 8:
            tables.append(head.low_freqs(u >> 8, step_bits))
            syms.append((u & 255) >> step_bits)
            keeps.append(coded_rows[s:e])
        if low_bits:
            tables.append(BYTE_FREQS.expand(e - s, 256))
            syms.append(low_rows[s:e])
            keeps.append(ins_rows[s:e])
        # (t, c, stage, b) order
        st = len(tables)
        f = torch.stack(tables, 1)
        f = f.view(-1, B, st, 256).transpose(1, 2).reshape(-1, 256)
        sy = torch.stack(syms, 1).view(-1, B, st).transpose(1, 2).reshape(-1)
        keep = torch.stack(keeps, 1).view(-1, B, st).transpose(1, 2).reshape(-1)
        f, sy = f[keep], sy[keep]
        stats.nll_bits += float(exact_bits(f, sy).sum())
        enc.encode(sy, f)
    prefix = pack_predictors(pred, use_ref)
    if container.FORMAT_VERSION >= container.STREAM_MODES_VERSION:
        prefix = pack_modes(modes) + prefix
    stats.nll_bits += 8 * len(prefix)
    return prefix + enc.finish(trimmed=container.FORMAT_VERSION >= container.COMPACT_VERSION)


def decode_segments(model: zoo.ExactModel, segments: list[tuple[bytes, int]], info: AudioInfo, wasted: int,
                    low_bits: int, chunk: int, version: int) -> list[np.ndarray]:
    """Decode several segments, each (payload, frames), in one lock-step: every chunk and
    channel of all of them steps together (a step's cost is mostly per step, not per stream),
    each segment read by its own range decoder.  A stream's samples depend on its own segment
    alone, so the result is the same as decoding the segments one by one.  -> native samples
    (frames, C) int32 per segment."""
    with _single_thread():
        return _decode_segments_loop(model, segments, info, wasted, low_bits, chunk, version)


@dataclass
class _SegmentState:
    """One segment's part of a lock-step decode: its chunks ``rows`` (a slice of the combined
    chunk axis), layout, stream modes, predictors and range decoder."""

    rows: slice
    lay: "_Layout"
    modes: torch.Tensor
    pred: Predictor
    dec: Decoder


def _open_segment(model, payload: bytes, frames: int, info: AudioInfo, chunk: int, version: int,
                  first_row: int) -> _SegmentState:
    lay = _Layout(frames, info.channels, chunk)
    modes, msize = torch.zeros(lay.B * lay.C, dtype=torch.int64), 0
    if version >= container.STREAM_MODES_VERSION:
        modes, msize = unpack_modes(payload, lay.C, lay.B * lay.C, version)
    pred, size = unpack_predictors(payload[msize:], uses_reference(modes, lay.has_ref), model.config.lpc,
                                   model.config.lpc_cross, version)
    dec = Decoder(payload[msize + size:], trimmed=version >= container.COMPACT_VERSION)
    return _SegmentState(slice(first_row, first_row + lay.B), lay, modes, pred, dec)


def _decode_symbols(parts: list[_SegmentState], tables: torch.Tensor, coded: torch.Tensor) -> torch.Tensor:
    """Symbols (B,) of the combined chunks where ``coded`` (B,), each segment's from its own
    decoder with the tables (B, 256) of its chunks; zero elsewhere."""
    out = torch.zeros(len(coded), dtype=torch.int64)
    for part in parts:
        sel = coded[part.rows]
        out[part.rows][sel] = part.dec.decode(tables[part.rows][sel])
    return out


def _decode_segments_loop(model, segments, info, wasted, low_bits, chunk, version) -> list[np.ndarray]:
    ops = model.ops
    C, Q = info.channels, model.config.lpc_cross
    parts, row = [], 0
    for payload, frames in segments:
        parts.append(_open_segment(model, payload, frames, info, chunk, version, row))
        row = parts[-1].rows.stop
    B, N = row, max(p.lay.N for p in parts)
    cat = lambda f: torch.cat([f(p) for p in parts])  # noqa: E731  (combined over the chunk axis)
    modes, lay_ref = cat(lambda p: p.modes), cat(lambda p: p.lay.has_ref)
    inside = cat(lambda p: F.pad(p.lay.inside, (0, N - p.lay.N)))  # (B, N)
    has_ref, couple = uses_reference(modes, lay_ref), coupled(modes, lay_ref).view(B, C)
    no_symbols = exact(modes).view(B, C)
    verb = verbatim(modes).view(B, C) if bool(verbatim(modes).any()) else None
    P = max(p.pred.order for p in parts)  # the longest predictor (format 10 on; before, the model's)
    # oldest-first windows (below) take the taps in reverse order, zero taps in front of the
    # shorter orders: the same exact sums
    own = cat(lambda p: F.pad(p.pred.taps.flip(-1), (P - p.pred.order, 0))).to(torch.float64).view(B, C, P)
    crs = cat(lambda p: p.pred.cross.flip(-1)).to(torch.float64).view(B, C, Q)
    coef = torch.cat([own, crs], -1)
    shifts = cat(lambda p: p.pred.shift).view(B, C)
    cache = CachedDecoder(ops, B * C)
    head = ExactAudioHead(ops.tables, model.config.mixtures)
    mulaw = ops.tables["mulaw"]
    H = max(P, Q)
    hist = torch.zeros(B, C, H + N, dtype=torch.float64)  # model samples, H zeros of no past
    eprev = torch.zeros(B, C, dtype=torch.int64)  # the predictor's last error per stream
    low = torch.zeros(B, C, N, dtype=torch.int64)
    step_bits = min(wasted, 8)
    zeros = torch.zeros(B, dtype=torch.int64)
    for t in range(N):
        prev = hist[:, :, H + t - 1].to(torch.int64).reshape(-1) if t else torch.zeros(B * C, dtype=torch.int64)
        rprev = torch.roll(prev, 1, 0) * has_ref
        params = cache.step(embed_step(prev, eprev.view(-1), rprev, has_ref, info.rate, t, mulaw)).to(torch.int64)
        params = params.view(B, C, -1)
        m = inside[:, t]
        lpc_prev, s_prev = None, None
        for c in range(C):
            window = hist[:, c, H + t - P:H + t]
            if Q and c:  # the reference channel's samples t-Q+1 .. t (t was just decoded)
                window = torch.cat([window, hist[:, c - 1, H + t - Q + 1:H + t + 1]], -1)
                lpc = exact_lpc_step(window, coef[:, c], shifts[:, c])
            else:
                lpc = exact_lpc_step(window, own[:, c], shifts[:, c])
            e_ref = zeros if c == 0 else torch.where(couple[:, c], (s_prev << MEAN_BITS) - lpc_prev, 0)
            head.start(params[:, c], lpc, e_ref, None if verb is None else verb[:, c])
            coded = m & ~no_symbols[:, c]
            hi = _decode_symbols(parts, head.high_freqs(), coded)
            lo = torch.zeros(B, dtype=torch.int64)
            if step_bits < 8:
                lo = _decode_symbols(parts, head.low_freqs(hi, step_bits), coded) << step_bits
            if low_bits:
                low[:, c, t] = _decode_symbols(parts, BYTE_FREQS.expand(B, 256), m)
            # a stream without symbols is its prediction (clamped: a corrupt file then fails its CRC)
            s = torch.where(no_symbols[:, c], (lpc >> MEAN_BITS).clamp(-32768, 32767),
                            ((hi << 8) | (lo & 255)) - 32768)
            hist[:, c, H + t] = s.to(torch.float64)
            eprev[:, c] = residual(s, lpc)
            lpc_prev, s_prev = lpc, s
    m_samples = hist[:, :, H:].to(torch.int64)  # (B, C, N)
    native = (m_samples << 8) | low if info.bits == 24 else m_samples >> (16 - info.bits)
    return [native[p.rows].permute(0, 2, 1).reshape(-1, C)[:p.lay.frames].numpy().astype(np.int32) for p in parts]


# ----------------------------------------------------------------------------- whole streams

def default_chunk(rate: int) -> int:
    """Frames per independently coded chunk for a recording of ``rate`` Hz (see RATE_CHUNKS)."""
    return zoo.rate_band(RATE_CHUNKS, rate)


def encode_stream(model: zoo.ExactModel, info: AudioInfo, blocks, chunk: int | None = None,
                  group: int = DEFAULT_GROUP, device: str = "cpu", progress: bool | None = None):
    """Encode a recording given ``blocks()``, a function returning a fresh iterator of native
    (n, C) blocks (it is called twice: a first pass for the CRC and the wasted bits).

    ``chunk``: frames per chunk (None: :func:`default_chunk` of the rate). Yields the .arc bytes
    piece by piece (header, then each segment); the last value yielded is the
    :class:`AudioEncodeStats`.
    """
    if not model.is_audio:
        raise zoo.ModelError(f"model {model.name} is an image model; audio needs a WaveNet model")
    dev = _device(device)
    if chunk is None:
        chunk = default_chunk(info.rate)
    crc, frames, bits_or, any_low = scan(blocks())
    if frames != info.frames:
        raise ValueError(f"the file holds {frames} frames, its header says {info.frames}")
    wasted = wasted_bits(bits_or, info.bits)
    low_bits = 8 if info.bits == 24 and any_low else 0
    header = container.AudioHeader(fp.SCHEME_VERSION, info.channels, info.rate, frames, info.bits, wasted,
                                   low_bits, chunk, group, crc,
                                   {"format": info.format, "subtype": info.subtype, "tags": info.tags},
                                   model.name, model.digest)
    if container.FORMAT_VERSION >= container.AUDIO_COMPACT_VERSION and zoo.is_shipped(model):
        header.model_name = ""  # its digest finds it among the shipped models
    yield container.pack_audio_header(header)
    stats = AudioEncodeStats()
    seg_frames = chunk * group
    bar = tqdm(total=frames * info.channels, desc="encoding", unit="sample", unit_scale=True,
               disable={True: False, False: True, None: None}[progress], leave=False)
    for seg in _rechunk(blocks(), seg_frames):
        data = encode_segment(model, seg, info, wasted, low_bits, chunk, dev, stats)
        stats.payload_bytes += len(data)
        yield container.pack_segment(data)
        bar.update(seg.size)
    bar.close()
    yield stats


def _rechunk(blocks, frames: int):
    """Regroup native blocks into arrays of exactly ``frames`` frames (the last may be shorter)."""
    buf, have = [], 0
    for b in blocks:
        while len(b):
            take = min(len(b), frames - have)
            buf.append(b[:take])
            have += take
            b = b[take:]
            if have == frames:
                yield np.concatenate(buf)
                buf, have = [], 0
    if have:
        yield np.concatenate(buf)


def decode_stream(reader, model_for, workers: int | None = None, progress: bool | None = None):
    """Decode an audio .arc from a container reader.

    Yields the :class:`AudioInfo` first, then native (n, C) blocks in order; raises DecodeError
    at the end if the samples fail the CRC check (callers must write to a temporary file).
    ``model_for(name, digest) -> ExactModel``.
    """
    h = container.read_audio_header(reader)
    if h.scheme != fp.SCHEME_VERSION:
        raise container.FormatError(f"exact scheme version {h.scheme} is not supported "
                                    f"(this arcompress uses {fp.SCHEME_VERSION})")
    meta = h.meta
    fmt, subtype, tags = meta.get("format"), meta.get("subtype"), meta.get("tags", {})
    if not isinstance(fmt, str) or not isinstance(subtype, str) or not isinstance(tags, dict):
        raise container.FormatError("corrupt header (audio metadata)")
    info = AudioInfo(h.rate, h.channels, h.frames, h.bits, fmt, subtype, tags)
    model = model_for(h.model_name, h.model_digest)
    if not model.is_audio:
        raise container.FormatError("corrupt header (the model is not an audio model)")
    yield info
    seg_frames = h.chunk * h.group
    n_seg = h.segment_count()
    bar = tqdm(total=h.frames * h.channels, desc="decoding", unit="sample", unit_scale=True,
               disable={True: False, False: True, None: None}[progress], leave=False)
    crc = 0

    if workers is None:
        workers = min(n_seg, os.cpu_count() or 1) if h.frames * h.channels >= 1 << 16 else 1
    # segments per process job, stepped together: up to LOCKSTEP_STREAMS streams, as long as
    # every worker still gets a job
    per_job = max(1, min(LOCKSTEP_STREAMS // (h.group * h.channels), -(-n_seg // max(1, workers))))

    def jobs():
        for k0 in range(0, n_seg, per_job):
            segs = [(container.read_segment(reader), min(seg_frames, h.frames - k * seg_frames))
                    for k in range(k0, min(n_seg, k0 + per_job))]
            yield model, segs, info, h.wasted, h.low_bits, h.chunk, h.version

    for blocks in _run_ordered(jobs(), workers):
        for block in blocks:
            crc = zlib.crc32(np.ascontiguousarray(block, dtype="<i4").tobytes(), crc)
            bar.update(block.size)
            yield block
    bar.close()
    if reader.pos != reader.size:
        raise container.FormatError("file has trailing bytes after the last segment")
    if crc != h.crc32:
        raise DecodeError("decoded samples fail the CRC check: the file is corrupt "
                          "(or was written with a model whose weights differ)")


_MODEL: list = []


def _segment_job(args):
    return decode_segments(_MODEL[0], *args)


def _chain(first, rest):
    yield first
    yield from rest


def _run_ordered(jobs, workers: int):
    """Results of decode_segments over ``jobs`` in order, at most 2 * workers in flight."""
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        for job in jobs:
            yield decode_segments(*job)
        return
    first = next(jobs, None)
    if first is None:
        return
    _MODEL[:] = [first[0]]  # inherited by the forked workers, never pickled
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        pending = deque()
        for job in _chain(first, jobs):
            pending.append(pool.submit(_segment_job, job[1:]))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
