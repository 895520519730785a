"""A thin, vectorised layer over constriction's range coder.

Tables are integer frequencies (N, 256), each >= 1 and summing to exactly 2**PRECISION
(:func:`arcompress.head.freqs_from_masses`).  constriction's ``Categorical(perfect=False)``
quantizes float probabilities with a scale of ``(2**PRECISION - n) / sum(p)``; handing it
``freq - 1`` (exact in float64) makes that scale exactly 1.0, so its internal table is ours,
entry for entry (``tests/test_coder.py`` checks the coded length against our table).
"""

from __future__ import annotations

import numpy as np
import constriction
import torch

_FAMILY = constriction.stream.model.Categorical(perfect=False)


def _probs(freqs: torch.Tensor) -> np.ndarray:
    return (freqs - 1).to(torch.float64).cpu().numpy()


class Encoder:
    """Accumulates symbols in decoding order; :meth:`finish` returns the bytes."""

    def __init__(self):
        self._enc = constriction.stream.queue.RangeEncoder()

    def encode(self, symbols: torch.Tensor, freqs: torch.Tensor) -> None:
        """symbols (N,) in 0..255 with their tables (N, 256)."""
        if symbols.numel():
            self._enc.encode(symbols.to(torch.int32).cpu().numpy(), _FAMILY, _probs(freqs))

    def finish(self) -> bytes:
        words = self._enc.get_compressed()
        return words.astype("<u4").tobytes()


class DecodeError(ValueError):
    """The payload does not decode (corrupt or truncated data)."""


class Decoder:
    def __init__(self, data: bytes):
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
