"""Bit-level writing and reading, most significant bit first, with Rice codes for signed
integers: the audio predictors' taps (tapcode.py) and the image calibrations (container.py,
format version 14).

A Rice code with parameter k writes a signed integer t as |t| >> k in unary (ones, then a
zero), the k low bits of |t|, then a sign bit (1: negative) when t is not zero; a run of
values is written as its 4-bit k, then the values.
"""

from __future__ import annotations

from typing import Callable

import torch

from .errors import FormatError

RICE_PARAM_BITS = 4
_KS = torch.arange(1 << RICE_PARAM_BITS)


def rice_bits(q: torch.Tensor, counts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The cheapest Rice parameter of each row of integers ``q`` (N, P) int64 and its code
    length in bits, parameter included: (bits (N,), k (N,)).  ``counts`` (N,): code only the
    first ``counts[n]`` values of row n (None: all P)."""
    a = q.abs().unsqueeze(-1)
    each = (a >> _KS) + 1 + _KS + (a > 0)  # (N, P, 16)
    if counts is not None:
        each = each * (torch.arange(q.shape[1]).view(1, -1, 1) < counts.view(-1, 1, 1))
    best = each.sum(1).min(1)
    return best.values + RICE_PARAM_BITS, best.indices


class BitWriter:
    """Collects bits; :meth:`bytes` pads them with zero bits to a whole byte."""

    def __init__(self):
        self.acc, self.n = 0, 0

    def put(self, value: int, bits: int) -> None:
        self.acc = (self.acc << bits) | value
        self.n += bits

    def rice(self, values: list[int], k: int) -> None:
        """``k`` (RICE_PARAM_BITS), then each value's Rice code."""
        self.put(k, RICE_PARAM_BITS)
        for t in values:
            a = abs(t)
            run = a >> k
            self.put(((1 << run) - 1) << 1, run + 1)
            self.put(a & ((1 << k) - 1), k)
            if a:
                self.put(int(t < 0), 1)

    def bytes(self) -> bytes:
        pad = -self.n % 8
        return (self.acc << pad).to_bytes((self.n + pad) // 8, "big")


class BitReader:
    """Reads bits from ``next_byte()``, called once per byte the bits reach (it raises
    FormatError past the end); ``what`` names the field in error messages."""

    def __init__(self, next_byte: Callable[[], int], what: str):
        self.next_byte, self.what = next_byte, what
        self.pos, self.current = 0, 0

    @classmethod
    def of_bytes(cls, data: bytes, what: str) -> "BitReader":
        it = iter(data)

        def next_byte() -> int:
            b = next(it, None)
            if b is None:
                raise FormatError(f"file is truncated ({what})")
            return b
        return cls(next_byte, what)

    @property
    def bytes_read(self) -> int:
        return (self.pos + 7) // 8

    def bit(self) -> int:
        if self.pos % 8 == 0:
            self.current = self.next_byte()
        self.pos += 1
        return (self.current >> (8 - self.pos % 8) % 8) & 1

    def get(self, bits: int) -> int:
        v = 0
        for _ in range(bits):
            v = (v << 1) | self.bit()
        return v

    def rice(self, count: int, limit: int) -> list[int]:
        """``count`` values written by :meth:`BitWriter.rice`; FormatError for one whose
        magnitude exceeds ``limit``."""
        k = self.get(RICE_PARAM_BITS)
        out = []
        for _ in range(count):
            run = 0
            while self.bit():
                run += 1
                if run > limit >> k:
                    raise FormatError(f"corrupt {self.what}")
            a = (run << k) | self.get(k)
            if a > limit:
                raise FormatError(f"corrupt {self.what}")
            out.append(-a if a and self.bit() else a)
        return out
