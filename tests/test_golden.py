"""Files written by an earlier arcompress must decode: stored .arc files (tests/data, made by
``python tests/golden.py``) against the arrays they hold.

The other round-trip tests encode and decode with the same code, so a change to the exact
arithmetic that alters encoder and decoder alike (a table, a rounding, the coder's stream)
passes them while every file written before it stops decoding.  These files pin the format:
the image and audio models, both heads, the range coder and the container.
"""

from __future__ import annotations

import numpy as np
import pytest

import arcompress
from arcompress import api

import golden


@pytest.mark.parametrize("name", list(golden.CASES))
def test_stored_file_decodes_to_its_array(name):
    make, rate, bits = golden.CASES[name]
    data = golden.path(name).read_bytes()
    expected = make()
    if rate is None:
        got = arcompress.decompress(data)
        np.testing.assert_array_equal(got.reshape(expected.shape), expected)
    else:
        got, got_rate = api.decompress_audio(data)
        assert got_rate == rate
        np.testing.assert_array_equal(got, expected)
