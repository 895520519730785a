"""Per-stream coding modes of an audio segment (format version 9 on).

Every stream (one channel of one chunk) gets a mode, chosen by the encoder and stored in its
segment before the predictors:

- how a channel after the first uses the channel before it (its *reference*):
  ``REF_FULL``: the network sees it, the predictor has taps on it and every mixture component
  shifts its mean by ``tanh(coupling)`` times its prediction error (what versions 1-8 always
  did); ``REF_TAPS``: the same without the coupling; ``REF_NONE``: coded as a first channel
  is, from its own past alone.  The first channel of a chunk is always ``REF_FULL`` (0; it has
  no reference).
- ``EXACT``: the stream's linear predictor gives every sample exactly (a channel that copies
  the one before it, digital silence), so no symbol is coded for it: the decoder takes the
  prediction.
- ``VERBATIM`` (format version 11 on): the stream's samples are coded with uniform tables,
  ``16 - wasted`` bits each (the bits of the PCM itself, as FLAC's verbatim subframes), where
  the model would take more (full-scale white noise).  Its predictor and network still run:
  the next channel and the stream's own inputs read them.  Never together with ``EXACT``.

Stored as one byte, 0 when every stream has mode 0; otherwise 1, then one 4-bit mode per
stream (the first stream in the high half of a byte), padded with zero bits to a byte.
"""

from __future__ import annotations

import torch

from .container import VERBATIM_VERSION, FormatError

REF_FULL, REF_NONE, REF_TAPS = 0, 1, 2
REF_MASK = 3
EXACT = 4
VERBATIM = 8


def pack_modes(modes: torch.Tensor) -> bytes:
    """Modes (S,) int64 -> their bytes in a segment."""
    if not bool(modes.any()):
        return b"\x00"
    m = modes.tolist() + [0] * (len(modes) % 2)
    return b"\x01" + bytes((m[i] << 4) | m[i + 1] for i in range(0, len(m), 2))


def unpack_modes(payload: bytes, channels: int, streams: int, version: int) -> tuple[torch.Tensor, int]:
    """The modes at the start of a segment payload of ``streams`` streams (chunk-major,
    channel-minor) in a file of format ``version``: (modes (S,) int64, bytes read).  Raises
    FormatError on a corrupt field (a ``VERBATIM`` stream before version 11 among them)."""
    if not payload:
        raise FormatError("file is truncated (segment shorter than its stream modes)")
    if payload[0] == 0:
        return torch.zeros(streams, dtype=torch.int64), 1
    size = 1 + (streams + 1) // 2
    if payload[0] != 1:
        raise FormatError("corrupt segment (stream modes)")
    if len(payload) < size:
        raise FormatError("file is truncated (segment shorter than its stream modes)")
    nibbles = [v for b in payload[1:size] for v in (b >> 4, b & 15)]
    modes = torch.tensor(nibbles[:streams], dtype=torch.int64)
    first = torch.arange(streams) % channels == 0
    top = 2 * VERBATIM if version >= VERBATIM_VERSION else VERBATIM
    bad = (modes >= top) | ((modes & REF_MASK) == REF_MASK) | (first & ((modes & REF_MASK) != REF_FULL)) \
        | (((modes & EXACT) != 0) & ((modes & VERBATIM) != 0))
    if bool(bad.any()) or any(nibbles[streams:]):
        raise FormatError("corrupt segment (stream modes)")
    return modes, size


def uses_reference(modes: torch.Tensor, has_ref: torch.Tensor) -> torch.Tensor:
    """(S,) bool: streams whose network input and predictor take their reference channel."""
    return has_ref & ((modes & REF_MASK) != REF_NONE)


def coupled(modes: torch.Tensor, has_ref: torch.Tensor) -> torch.Tensor:
    """(S,) bool: streams whose mixture means follow the reference's prediction error."""
    return has_ref & ((modes & REF_MASK) == REF_FULL)


def exact(modes: torch.Tensor) -> torch.Tensor:
    """(S,) bool: streams coded without symbols (their predictor is exact)."""
    return (modes & EXACT) != 0


def verbatim(modes: torch.Tensor) -> torch.Tensor:
    """(S,) bool: streams whose samples are coded with uniform tables."""
    return (modes & VERBATIM) != 0
