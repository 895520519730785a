"""Rice codes for the linear-predictor taps an audio segment stores (format version 7 on).

Each stream's predictor is written as bits, most significant first::

    order      3 bits   (format version 10 on) the index in LPC_ORDERS of the stream's order:
                        the number of own taps written (the encoder's choice, audio_head.choose_lpc)
    shift      4 bits   fractional bits of the taps (0-15)
    k          4 bits   Rice parameter of the own taps
    taps       order of them, Rice-coded (bitio.py: |tap| >> k in unary, the k low bits of
               |tap|, then a sign bit when the tap is not zero)
    k, taps    the same for the cross taps, only for a stream with a reference channel in a model
               with cross taps

and the whole prefix is padded with zero bits to a byte.  The encoder chooses the precision
(audio_head.chunk_lpc), so a 16-tap predictor costs about 9 bytes instead of the 33 of
fixed 16-bit taps (versions 1-6).  Versions 7-9 write no order: every stream has the model's.
"""

from __future__ import annotations

import torch

from .bitio import BitReader, BitWriter, rice_bits
from .errors import FormatError

SHIFT_BITS = 4
ORDER_BITS = 3
#: the predictor orders a stream may have from format version 10 (its 3-bit code is the index)
LPC_ORDERS = (2, 4, 8, 16, 32, 64, 128)
TAP_LIMIT = 32767


def order_codes(orders: torch.Tensor) -> torch.Tensor:
    """Predictor orders (N,) -> their 3-bit codes; ValueError for an order not in LPC_ORDERS."""
    table = torch.tensor(LPC_ORDERS)
    hit = orders.view(-1, 1) == table
    if not bool(hit.any(1).all()):
        raise ValueError(f"predictor orders must be among {LPC_ORDERS}")
    return hit.to(torch.int64).argmax(1)


def predictor_bits(taps: torch.Tensor, cross: torch.Tensor, has_ref: torch.Tensor,
                   orders: torch.Tensor | None = None) -> torch.Tensor:
    """Bits (N,) int64 that :func:`pack_taps` writes for each stream, before the padding to a
    byte: taps (N, P), cross (N, Q), has_ref (N,) bool, orders (N,) or None (as pack_taps)."""
    bits = SHIFT_BITS + rice_bits(taps, orders)[0]
    if orders is not None:
        bits = bits + ORDER_BITS
    if cross.shape[1]:
        bits = bits + torch.where(has_ref, rice_bits(cross)[0], 0)
    return bits


def pack_taps(taps: torch.Tensor, cross: torch.Tensor, shift: torch.Tensor, has_ref: torch.Tensor,
              orders: torch.Tensor | None = None) -> bytes:
    """Taps (S, P), cross taps (S, Q), shifts (S,), has_ref (S,) -> the coded predictors.
    ``orders`` (S,) (format version 10 on): each stream's order, written as its code, and only
    that many own taps are written (the rest must be zero); None: all P, no order codes."""
    w = BitWriter()
    _, k_own = rice_bits(taps, orders)
    k_cross = rice_bits(cross)[1] if cross.shape[1] else None
    codes = None if orders is None else order_codes(orders)
    for n in range(taps.shape[0]):
        count = taps.shape[1]
        if codes is not None:
            count = int(orders[n])
            if bool(taps[n, count:].any()):
                raise ValueError("taps past a stream's order must be zero")
            w.put(int(codes[n]), ORDER_BITS)
        w.put(int(shift[n]), SHIFT_BITS)
        w.rice(taps[n, :count].tolist(), int(k_own[n]))
        if k_cross is not None and bool(has_ref[n]):
            w.rice(cross[n].tolist(), int(k_cross[n]))
    return w.bytes()


def unpack_taps(payload: bytes, has_ref: torch.Tensor, order: int | None, cross: int):
    """The coded predictors at the start of ``payload``: (taps (S, P), cross taps (S, cross),
    shifts (S,), orders (S,), all int64, zero cross taps for streams without a reference; bytes
    read).  ``order``: every stream's order (versions 7-9); None: each stream's is written
    (version 10 on), and P is the largest of them (the taps past a stream's order are zero)."""
    r = BitReader.of_bytes(payload, "predictor taps")
    S = len(has_ref)
    rows, xt = [], torch.zeros(S, cross, dtype=torch.int64)
    shift, orders = torch.zeros(S, dtype=torch.int64), torch.zeros(S, dtype=torch.int64)
    for n in range(S):
        if order is None:
            code = r.get(ORDER_BITS)
            if code >= len(LPC_ORDERS):
                raise FormatError("corrupt segment (predictor order)")
            orders[n] = LPC_ORDERS[code]
        else:
            orders[n] = order
        shift[n] = r.get(SHIFT_BITS)
        rows.append(r.rice(int(orders[n]), TAP_LIMIT))
        if cross and bool(has_ref[n]):
            xt[n] = torch.tensor(r.rice(cross, TAP_LIMIT), dtype=torch.int64)
    width = int(orders.max()) if S else (order or 0)
    taps = torch.zeros(S, width, dtype=torch.int64)
    for n, row in enumerate(rows):
        taps[n, :len(row)] = torch.tensor(row, dtype=torch.int64)
    return taps, xt, shift, orders, r.bytes_read
