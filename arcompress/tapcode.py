"""Rice codes for the linear-predictor taps an audio segment stores (format version 7 on).

Each stream's predictor is written as bits, most significant first::

    shift      4 bits   fractional bits of the taps (0-15)
    k          4 bits   Rice parameter of the own taps
    taps       order of them: |tap| >> k in unary (ones, then a zero), the k low bits of |tap|,
               then a sign bit (1: negative) when the tap is not zero
    k, taps    the same for the cross taps, only for a stream with a reference channel in a model
               with cross taps

and the whole prefix is padded with zero bits to a byte.  The encoder chooses the precision
(audio_head.chunk_lpc), so a 16-tap predictor costs about 9 bytes instead of the 33 of
fixed 16-bit taps (versions 1-6).
"""

from __future__ import annotations

import torch

from .container import FormatError

SHIFT_BITS = 4
RICE_PARAM_BITS = 4
TAP_LIMIT = 32767
_KS = torch.arange(1 << RICE_PARAM_BITS)


def rice_bits(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The cheapest Rice parameter of each row of taps ``q`` (N, P) int64 and its code length
    in bits, parameter included: (bits (N,), k (N,))."""
    a = q.abs().unsqueeze(-1)
    cost = ((a >> _KS) + 1 + _KS + (a > 0)).sum(1)  # (N, 16)
    best = cost.min(1)
    return best.values + RICE_PARAM_BITS, best.indices


class _BitWriter:
    def __init__(self):
        self.acc, self.n = 0, 0

    def put(self, value: int, bits: int) -> None:
        self.acc = (self.acc << bits) | value
        self.n += bits

    def rice(self, taps: list[int], k: int) -> None:
        self.put(k, RICE_PARAM_BITS)
        for t in taps:
            a = abs(t)
            run = a >> k
            self.put(((1 << run) - 1) << 1, run + 1)
            self.put(a & ((1 << k) - 1), k)
            if a:
                self.put(int(t < 0), 1)

    def bytes(self) -> bytes:
        pad = -self.n % 8
        return (self.acc << pad).to_bytes((self.n + pad) // 8, "big")


class _BitReader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def bit(self) -> int:
        i = self.pos >> 3
        if i >= len(self.data):
            raise FormatError("file is truncated (segment shorter than its predictors)")
        self.pos += 1
        return (self.data[i] >> (7 - (self.pos - 1) % 8)) & 1

    def get(self, bits: int) -> int:
        v = 0
        for _ in range(bits):
            v = (v << 1) | self.bit()
        return v

    def rice(self, count: int) -> list[int]:
        k = self.get(RICE_PARAM_BITS)
        out = []
        for _ in range(count):
            run = 0
            while self.bit():
                run += 1
                if run > TAP_LIMIT >> k:
                    raise FormatError("corrupt segment (predictor tap)")
            a = (run << k) | self.get(k)
            if a > TAP_LIMIT:
                raise FormatError("corrupt segment (predictor tap)")
            out.append(-a if a and self.bit() else a)
        return out


def pack_taps(taps: torch.Tensor, cross: torch.Tensor, shift: torch.Tensor, has_ref: torch.Tensor) -> bytes:
    """Taps (S, P), cross taps (S, Q), shifts (S,), has_ref (S,) -> the coded predictors."""
    w = _BitWriter()
    _, k_own = rice_bits(taps)
    k_cross = rice_bits(cross)[1] if cross.shape[1] else None
    for n in range(taps.shape[0]):
        w.put(int(shift[n]), SHIFT_BITS)
        w.rice(taps[n].tolist(), int(k_own[n]))
        if k_cross is not None and bool(has_ref[n]):
            w.rice(cross[n].tolist(), int(k_cross[n]))
    return w.bytes()


def unpack_taps(payload: bytes, has_ref: torch.Tensor, order: int, cross: int):
    """The coded predictors at the start of ``payload``: (taps (S, order), cross taps (S, cross),
    shifts (S,), all int64, zero cross taps for streams without a reference; bytes read)."""
    r = _BitReader(payload)
    S = len(has_ref)
    taps = torch.zeros(S, order, dtype=torch.int64)
    xt = torch.zeros(S, cross, dtype=torch.int64)
    shift = torch.zeros(S, dtype=torch.int64)
    for n in range(S):
        shift[n] = r.get(SHIFT_BITS)
        taps[n] = torch.tensor(r.rice(order), dtype=torch.int64)
        if cross and bool(has_ref[n]):
            xt[n] = torch.tensor(r.rice(cross), dtype=torch.int64)
    return taps, xt, shift, (r.pos + 7) // 8
