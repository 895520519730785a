"""The .arc format: header round trip, validation, and fuzzing (flips and truncations)."""

import random

import numpy as np
import pytest

from arcompress import api, codec, container, zoo
from arcompress.coder import DecodeError
from arcompress.media import from_array

from conftest import natural_image

EXPECTED = (container.FormatError, DecodeError, zoo.ModelError)


def test_header_round_trip():
    h = container.Header(1, 5, 7, "RGBA", 32, 4, 0xDEADBEEF, {"text": {"a": "b"}},
                         [container.PlaneGroup(3, "m", b"\x01" * 32, [b"abcd", b""]),
                          container.PlaneGroup(1, "n", b"\x02" * 32, [b"xy"])])
    g = container.unpack(container.pack(h))
    for p in h.planes:  # the header keeps the first 8 bytes of each model's SHA-256
        p.model_digest = p.model_digest[:container.IMAGE_DIGEST_BYTES]
    assert g == h


def test_small_image_header_is_compact(tiny_models):
    """A 28x28 grey file spends little on its header: the model is named by 8 bytes of its SHA-256
    (and, for a shipped model, by nothing else: test_shipped_models_are_found_by_digest)."""
    data, stats = codec.encode_image(from_array(natural_image(28, 28, 1, seed=3)), tiny_models.__getitem__)
    header = len(data) - stats.payload_bytes
    assert header <= 36 + len(tiny_models[1].name), header  # 35 fixed bytes (2-byte segment length)


def test_older_versions_still_decode(tiny_models, monkeypatch):
    """Files of format version 1 (32-byte model digests), 2 (no scale offsets) and 3 are still read."""
    a = natural_image(9, 10, 3, seed=5)
    monkeypatch.setattr(container, "FORMAT_VERSION", 1)
    monkeypatch.setattr(container, "IMAGE_DIGEST_BYTES", 32)
    v1, _ = codec.encode_image(from_array(a), tiny_models.__getitem__, tile=8)
    monkeypatch.undo()
    monkeypatch.setattr(container, "FORMAT_VERSION", 2)
    v2, _ = codec.encode_image(from_array(a), tiny_models.__getitem__, tile=8)
    monkeypatch.undo()
    monkeypatch.setattr(container, "FORMAT_VERSION", 3)
    v3, _ = codec.encode_image(from_array(a), tiny_models.__getitem__, tile=8, adapt=False)
    monkeypatch.undo()
    new, _ = codec.encode_image(from_array(a), tiny_models.__getitem__, tile=8, adapt=False)
    assert (v1[4], v2[4], v3[4], new[4]) == (1, 2, 3, container.FORMAT_VERSION) and len(v1) == len(v2) + 24
    assert container.FORMAT_VERSION == container.UNNAMED_SHIPPED_VERSION == 4
    assert container.unpack(v1).planes[0].model_digest == tiny_models[3].digest
    assert [api.info(d)["format_version"] for d in (v1, v2, v3, new)] == [1, 2, 3, 4]
    for data in (v1, v2, v3, new):
        back = codec.decode_image(data, lambda name, d: tiny_models[3] if tiny_models[3].matches(d) else None)
        assert np.array_equal(back.pixels, a)


def test_shipped_models_are_found_by_digest(monkeypatch):
    """From version 4 a shipped model is not named in the header (its 8-byte digest finds it); a
    version-3 file names it.  Both decode; an unnamed digest that no shipped model has is a clear error."""
    a = natural_image(6, 5, 3, seed=2)
    monkeypatch.setattr(container, "FORMAT_VERSION", 3)
    v3, _ = codec.encode_image(from_array(a))
    monkeypatch.undo()
    v4, _ = codec.encode_image(from_array(a))
    name = zoo.DEFAULTS[3]
    assert container.unpack(v3).planes[0].model_name == name
    assert container.unpack(v4).planes[0].model_name == "" and len(v3) == len(v4) + len(name)
    assert api.info(v4)["models"][0]["name"] == name
    for data in (v3, v4):
        assert np.array_equal(codec.decode_image(data).pixels, a)
        assert np.array_equal(api.decompress(data, model=name), a)
    h = container.unpack(v4)
    h.planes[0].model_digest = bytes(8)
    with pytest.raises(zoo.ModelError, match="shipped model .* does not have"):
        codec.decode_image(container.pack(h))
    monkeypatch.setattr(container, "FORMAT_VERSION", 3)  # versions before 4 always name the model
    with pytest.raises(container.FormatError, match="model name"):
        container.unpack(container.pack(h))


def test_not_an_arc_file():
    with pytest.raises(container.FormatError, match="not an arcompress file"):
        container.unpack(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(container.FormatError):
        container.unpack(b"")


@pytest.fixture(scope="module")
def sample(tiny_models):
    a = natural_image(9, 10, 3, seed=7)
    data, _ = codec.encode_image(from_array(a), tiny_models.__getitem__, tile=8, group=2)
    return a, data


def test_every_truncation_is_rejected(sample, tiny_models):
    _, data = sample
    for n in range(len(data)):
        with pytest.raises(EXPECTED):
            codec.decode_image(data[:n], lambda name, d: tiny_models[3])


def test_random_byte_flips_never_crash_or_pass_silently(sample, tiny_models):
    a, data = sample
    rng = random.Random(0)
    def finder(name, digest):
        return tiny_models[3] if tiny_models[3].matches(digest) else codec.default_model_for(name, digest)
    for trial in range(150):
        buf = bytearray(data)
        for _ in range(rng.choice([1, 1, 2, 5])):
            pos = rng.randrange(len(buf))
            buf[pos] ^= 1 << rng.randrange(8)
        try:
            out = codec.decode_image(bytes(buf), finder)
        except EXPECTED:
            continue
        # a flip that decodes must still give the exact pixels (e.g. a flip in padding bits)
        assert np.array_equal(out.pixels, a), f"trial {trial}: wrong pixels passed the checks"
