"""Rice-coded linear predictors (format version 7): exact round trips, clear errors, the
encoder's precision choice."""

import numpy as np
import pytest
import torch

from arcompress.audio_head import chunk_lpc
from arcompress.container import FormatError
from arcompress.tapcode import pack_taps, rice_bits, unpack_taps

from conftest import tone


def _random_predictors(rng, streams=7, order=6, cross=3):
    taps = torch.from_numpy(rng.integers(-300, 301, (streams, order)))
    taps[0] = torch.tensor([32767, -32767, 0, 1, -1, 2])[:order]  # the extremes, zero, +-1
    taps[1] = 0
    xt = torch.from_numpy(rng.integers(-40, 41, (streams, cross)))
    has_ref = torch.tensor([i % 3 > 0 for i in range(streams)])
    xt[~has_ref] = 0
    shift = torch.from_numpy(rng.integers(0, 16, streams))
    return taps, xt, shift, has_ref


@pytest.mark.parametrize("cross", [0, 3])
def test_coded_predictors_round_trip_exactly(cross):
    rng = np.random.default_rng(0)
    taps, xt, shift, has_ref = _random_predictors(rng, cross=cross)
    data = pack_taps(taps, xt, shift, has_ref)
    back = unpack_taps(data + b"\xff\x00 symbols follow", has_ref, taps.shape[1], cross)
    assert torch.equal(back[0], taps) and torch.equal(back[1], xt) and torch.equal(back[2], shift)
    assert back[3] == len(data)
    bits = int(rice_bits(taps)[0].sum()) + 4 * len(taps)
    if cross:
        bits += int(rice_bits(xt)[0][has_ref].sum())
    assert len(data) == -(-bits // 8)  # the encoder's cost model counts what is written


def test_truncated_or_corrupt_predictors_raise_format_errors():
    rng = np.random.default_rng(1)
    taps, xt, shift, has_ref = _random_predictors(rng)
    data = pack_taps(taps, xt, shift, has_ref)
    for n in range(len(data)):
        with pytest.raises(FormatError):
            unpack_taps(data[:n], has_ref, taps.shape[1], xt.shape[1])
    with pytest.raises(FormatError, match="predictor tap"):  # k = 0 and a unary run past 32767
        unpack_taps(b"\x00" + b"\xff" * 5000, torch.tensor([False]), 4, 0)


def test_encoder_chooses_coarser_taps_that_cost_fewer_bits():
    """On a noisy resonance the chosen taps are coarser than the finest that fits int16, take
    fewer bits, and predict about as well."""
    x = torch.from_numpy(tone(2048, 1, seed=4)[:, 0].astype(np.int64)).view(1, -1)
    lengths = torch.tensor([2048])
    fine = chunk_lpc(x, lengths, 16, coded=False)
    coded = chunk_lpc(x, lengths, 16)
    assert int(coded.shift[0]) < int(fine.shift[0])
    assert int(rice_bits(coded.taps)[0][0]) < int(rice_bits(fine.taps)[0][0]) < 16 * 16
    err = {k: (x - (p.exact_prediction(x) >> 8)).double().pow(2).mean() for k, p in (("fine", fine), ("coded", coded))}
    assert err["coded"] < 1.05 * err["fine"]
