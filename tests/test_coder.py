"""The constriction layer: exact round trips and coded length equal to our tables' ideal length."""

import pytest
import torch

from arcompress.coder import DecodeError, Decoder, Encoder
from arcompress.head import PRECISION, exact_bits, freqs_from_masses


def test_round_trip_and_length_match_integer_tables():
    torch.manual_seed(0)
    mass = (torch.rand(5000, 256) ** 6 * 1e6).long()
    f = freqs_from_masses(mass)
    sym = torch.multinomial(f.double(), 1)[:, 0]
    enc = Encoder()
    enc.encode(sym[:1234], f[:1234])
    enc.encode(sym[1234:], f[1234:])
    data = enc.finish()
    ideal = float(exact_bits(f, sym).sum())
    assert ideal <= len(data) * 8 <= ideal * 1.001 + 64
    dec = Decoder(data)
    assert torch.equal(torch.cat([dec.decode(f[:3000]), dec.decode(f[3000:])]), sym)


def test_constriction_uses_our_table_entry_for_entry():
    """A frequency-1 symbol must cost PRECISION bits: constriction did not requantize the table."""
    n = 4000
    f = torch.ones(n, 256, dtype=torch.int64)
    f[:, 0] = (1 << PRECISION) - 255
    sym = torch.randint(1, 256, (n,))
    enc = Encoder()
    enc.encode(sym, f)
    bits = len(enc.finish()) * 8 / n
    assert PRECISION <= bits < PRECISION + 0.05


def test_bad_payload_length_is_rejected():
    with pytest.raises(DecodeError):
        Decoder(b"abc", trimmed=False)  # word streams (format versions 1-4) are whole words


@pytest.mark.parametrize("seed", range(4))
def test_trimmed_streams_are_shortest_and_decode(seed):
    """A trimmed stream decodes to the same symbols as the word stream, is at most as long, and
    one byte less no longer decodes them (it is the shortest)."""
    g = torch.Generator().manual_seed(seed)
    saved = []
    for trial in range(60):
        n = int(torch.randint(0, 120, (1,), generator=g))
        mass = (torch.rand(n, 256, generator=g) ** int(torch.randint(1, 30, (1,), generator=g)) * 1e9).long()
        f = freqs_from_masses(mass) if n else torch.ones(0, 256, dtype=torch.int64)
        sym = torch.multinomial(f.double(), 1, generator=g)[:, 0] if n else torch.zeros(0, dtype=torch.int64)
        streams = []
        for trimmed in (True, False):
            enc = Encoder()
            enc.encode(sym, f)
            streams.append(enc.finish(trimmed=trimmed))
        short, words = streams
        assert torch.equal(Decoder(short).decode(f), sym)
        assert torch.equal(Decoder(words, trimmed=False).decode(f), sym)
        assert len(short) <= len(words)
        if short:
            assert not torch.equal(Decoder(short[:-1]).decode(f), sym)
        saved.append(len(words) - len(short))
    assert sum(saved) / len(saved) > 1.0  # about 1.7 bytes per stream
