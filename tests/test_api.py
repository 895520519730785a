"""The Python API on numpy arrays."""

import numpy as np
import pytest

import arcompress
from arcompress.media import MediaError

from conftest import natural_image


@pytest.mark.parametrize("shape", [(6, 5), (6, 5, 1), (4, 7, 2), (5, 6, 3), (3, 4, 4)])
def test_compress_decompress(shape):
    a = natural_image(shape[0], shape[1], shape[2] if len(shape) == 3 else 1)
    a = a.reshape(shape)
    data = arcompress.compress(a)
    b = arcompress.decompress(data)
    assert b.dtype == np.uint8 and np.array_equal(b.reshape(shape), a)
    info = arcompress.info(data)
    assert info["width"] == shape[1] and info["height"] == shape[0]
    assert info["bits_per_subpixel"] == 8 * len(data) / a.size


def test_compress_with_model_file(tiny_models):
    model_file = tiny_models[3].source
    a = natural_image(5, 6, 3)
    data = arcompress.compress(a, model=model_file)
    assert arcompress.info(data)["models"][0]["name"] == "tiny-rgb"
    assert np.array_equal(arcompress.decompress(data, model=model_file), a)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint16), np.zeros((4, 4, 5), np.uint8),
                                 np.zeros((0, 4), np.uint8), np.zeros(7, np.uint8)])
def test_bad_arrays_are_refused(bad):
    with pytest.raises(MediaError):
        arcompress.compress(bad)
