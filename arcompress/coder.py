"""A thin, vectorised layer over constriction's range coder.

Tables are integer frequencies (N, 256), each >= 1 and summing to exactly 2**PRECISION
(:func:`arcompress.head.freqs_from_masses`).  constriction's ``Categorical(perfect=False)``
quantizes float probabilities with a scale of ``(2**PRECISION - n) / sum(p)``; handing it
``freq - 1`` (exact in float64) makes that scale exactly 1.0, so its internal table is ours,
entry for entry (``tests/test_coder.py`` checks the coded length against our table).

Streams come in two layouts.  *Word* streams (format versions 1-4) are constriction's 32-bit words,
little-endian.  *Trimmed* streams (version 5 on) are the same number written most significant
byte first and cut to the fewest bytes that still lie in the coder's final interval: constriction
seals a stream with one whole word (a point just below the interval's top: constriction's "sealing"),
which spends up to 32 bits where the interval's width leaves fewer undetermined.  A decoder reads
missing bytes as zeros, so the shortest prefix whose zero extension is in the interval decodes
to the same symbols (:func:`shortest_stream`; about 1.7 bytes saved per stream on the random
tables of ``tests/test_coder.py``).
"""

from __future__ import annotations

import numpy as np
import constriction
import torch

_FAMILY = constriction.stream.model.Categorical(perfect=False)


def _probs(freqs: torch.Tensor) -> np.ndarray:
    return (freqs - 1).to(torch.float64).cpu().numpy()


_STATE_BITS = 64  # constriction's RangeEncoder: 64-bit state, 32-bit words


def shortest_stream(words: np.ndarray, position: int, lower: int, width: int) -> bytes:
    """The fewest big-endian bytes whose zero extension lies in the sealed coder's final interval.

    ``words``: the sealed stream (n,) uint32; ``position``, ``lower``, ``width``: constriction's
    ``pos()`` just before sealing: the interval, possibly wrapping, starts at ``lower`` in a
    64-bit window over words ``position`` and ``position + 1`` (zero where the stream has ended).
    Reading words 0 .. position + 1 as one integer X, the interval is [L, L + width) with
    L = X - ((X - lower) mod 2**64).  A length k works if the smallest k-byte prefix at or above
    L is below L + width; if k works, so does every longer length, so the shortest is found by
    bisection.  Falls back to the whole words (big-endian) where the state does not describe the
    stream's end.
    """
    whole = words.astype(">u4").tobytes()
    total = 4 * (position + 2)
    if len(words) > position + 2:
        return whole
    x = int.from_bytes(whole + bytes(total - len(whole)), "big")
    low = x - ((x - lower) % (1 << _STATE_BITS))
    if not (0 <= low and x - low < width):
        return whole
    high = min(low + width, 1 << (8 * total))

    def point(k: int) -> int:  # the smallest multiple of 2**(8 (total - k)) at or above L
        b = 8 * (total - k)
        return -((-low) >> b) << b  # shifts, not division: linear in the stream's length

    shortest, longest = 0, len(whole)  # the whole stream works: L <= X < L + width
    while shortest < longest:
        mid = (shortest + longest) // 2
        if point(mid) < high:
            longest = mid
        else:
            shortest = mid + 1
    return point(shortest).to_bytes(total, "big")[:shortest]


class Encoder:
    """Accumulates symbols in decoding order; :meth:`finish` returns the bytes."""

    def __init__(self):
        self._enc = constriction.stream.queue.RangeEncoder()

    def encode(self, symbols: torch.Tensor, freqs: torch.Tensor) -> None:
        """symbols (N,) in 0..255 with their tables (N, 256)."""
        if symbols.numel():
            self._enc.encode(symbols.to(torch.int32).cpu().numpy(), _FAMILY, _probs(freqs))

    def finish(self, trimmed: bool = True) -> bytes:
        """The stream: trimmed (format version 5 on) or constriction's little-endian words."""
        position, (lower, width) = self._enc.pos()
        words = self._enc.get_compressed()
        if not trimmed:
            return words.astype("<u4").tobytes()
        return shortest_stream(words, int(position), int(lower), int(width))


class DecodeError(ValueError):
    """The payload does not decode (corrupt or truncated data)."""


class Decoder:
    """Decodes a stream of either layout (``trimmed``: see the module docstring)."""

    def __init__(self, data: bytes, trimmed: bool = True):
        if trimmed:
            data = bytes(data) + bytes(-len(data) % 4)
            words = np.frombuffer(data, dtype=">u4").astype(np.uint32)
        else:
            if len(data) % 4:
                raise DecodeError("payload length is not a multiple of 4 bytes")
            words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        self._dec = constriction.stream.queue.RangeDecoder(words)

    def decode(self, freqs: torch.Tensor) -> torch.Tensor:
        """Decode N symbols (int64 tensor on the tables' device) given their tables (N, 256)."""
        if freqs.shape[0] == 0:
            return torch.zeros(0, dtype=torch.int64, device=freqs.device)
        try:
            out = self._dec.decode(_FAMILY, _probs(freqs))
        except BaseException as e:  # constriction raises on invalid compressed data
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            raise DecodeError(f"corrupt payload ({e})") from None
        return torch.from_numpy(np.asarray(out, dtype=np.int64)).to(freqs.device)
