"""The .arc format: header round trip, validation, and fuzzing (flips and truncations)."""

import random

import zlib

import numpy as np
import pytest

from arcompress import api, calibration, codec, container, zoo
from arcompress.coder import DecodeError
from arcompress.head import num_params
from arcompress.media import from_array
from arcompress.plan import default_plan

from conftest import natural_image

EXPECTED = (container.FormatError, DecodeError, zoo.ModelError)


def _header(tile=32, group=4, meta=None, names=("m", "n"), segments=2):
    """An RGBA 40x70 header (with tile 32: 2 x 3 tiles, so 2 segments per plane group with group 4)."""
    return container.Header(1, 40, 70, "RGBA", tile, group, 0xDEADBEEF, meta or {},
                            [container.PlaneGroup(3, names[0], b"\x01" * 32, [b"abcd", b""] + [b"q"] * (segments - 2)),
                             container.PlaneGroup(1, names[1], b"\x02" * 32, [b"xy", b"z"] + [b""] * (segments - 2))])


def _short_digests(h):
    for p in h.planes:  # the header keeps the first 8 bytes of each model's SHA-256
        p.model_digest = p.model_digest[:container.IMAGE_DIGEST_BYTES]
    return h


@pytest.mark.parametrize("version", [4, 5, 6])
def test_header_round_trip(version, monkeypatch):
    monkeypatch.setattr(container, "FORMAT_VERSION", version)
    for h in (_header(meta={"text": {"a": "b"}}), _header(tile=16, group=3, names=("", "n"), segments=5),
              _header(names=("", ""))):
        h.version = version
        assert container.unpack(container.pack(h)) == _short_digests(h)


def test_compact_header_leaves_out_what_the_reader_derives():
    """Version 5 writes no plane-group count, channels, segment counts, default tiling, empty
    metadata or empty names: a default RGB header with one segment is 28 bytes."""
    plan = default_plan(20, 30)
    h = container.Header(1, 20, 30, "RGB", plan.tile, plan.group, 7, {},
                         [container.PlaneGroup(3, "", bytes(32), [bytes(300)])])
    data = container.pack(h)
    assert len(data) - 300 == 4 + 3 + 2 + 1 + 4 + 8 + 2 + 4 == 28
    assert data[9] == container.MODES.index("RGB")  # no flags: default plan, no metadata, no names
    assert container.unpack(data) == _short_digests(h)
    with pytest.raises(ValueError, match="segment counts"):
        container.pack(_header(group=1))
    with pytest.raises(ValueError, match="plane groups"):
        container.pack(container.Header(1, 20, 30, "LA", plan.tile, plan.group, 7, {},
                                        [container.PlaneGroup(3, "", bytes(32), [b"x"])]))


def _with_flag(h, flag):
    """The file of header h with ``flag`` set in the mode byte (and the header CRC fixed up)."""
    data = bytearray(container.pack(h))
    data[9] |= flag
    end = len(data) - sum(len(s) for p in h.planes for s in p.segments)  # header end, after hcrc
    data[end - 4:end] = zlib.crc32(bytes(data[:end - 4])).to_bytes(4, "little")
    return bytes(data)


def test_compact_header_rejects_unknown_flags(monkeypatch):
    monkeypatch.setattr(container, "FORMAT_VERSION", 12)  # calibrations came with version 13
    with pytest.raises(container.FormatError, match="image mode"):
        container.unpack(_with_flag(_header(), container.HAS_CALIBRATION))
    monkeypatch.setattr(container, "FORMAT_VERSION", 7)  # level sets came with version 8
    with pytest.raises(container.FormatError, match="image mode"):
        container.unpack(_with_flag(_header(), container.HAS_LEVELS))


def test_calibration_field_round_trips_and_is_validated():
    """A plane group's calibration: a count, then (version 14) for the gains and for the offsets
    their common shift and their Rice codes, or (version 13) zigzag varints; a group without one
    writes a count of 0 when another group has one."""
    h = _header()
    gains, offsets = (0, -1, 1, -4096, 4096), (32768, -32768, 63, -64, 0)
    h.planes[1].calibration = (gains, offsets)
    data = container.pack(h)
    assert data[9] & container.HAS_CALIBRATION
    field = container.pack_calibration(gains, offsets)
    assert field[0] == 5 and field[1] >> 4 == 0  # the count; the gains' shift (nothing in common)
    assert container.pack_calibration(gains, offsets, version=13)[:5] == bytes([5, 0, 1, 2, 0xFF])  # 0, -1, 1, -4096
    assert len(data) == len(container.pack(_header())) + 1 + len(field)  # + group 1's empty count
    back = container.unpack(data)
    assert back.planes[0].calibration is None and back.planes[1].calibration == (gains, offsets)
    assert not container.pack(_header())[9] & container.HAS_CALIBRATION
    with pytest.raises(ValueError):
        container.pack_calibration((1 << 16,), (0,))
    # values with trailing zero bits in common are written without them
    coarse = tuple(64 * v for v in (3, -5, 0, 7, 1)), tuple(1024 * v for v in (-2, 0, 1, 31, -32))
    small = container.pack_calibration(*coarse)
    assert small[1] >> 4 == 6 and len(small) < len(container.pack_calibration(coarse[0], offsets))
    h.planes[1].calibration = coarse
    assert container.unpack(container.pack(h)).planes[1].calibration == coarse
    # a count beyond the limit, values cut short, a unary run past the largest value: format errors
    start = data.index(field)
    for bad in (data[:start] + bytes([0xFF, 0xFF, 0x7F]) + data[start + 1:], data[:start + 3],
                data[:start + 1] + bytes([0x00]) + b"\xff" * 4200):
        with pytest.raises(container.FormatError):
            container.unpack(bad)


def test_level_sets_round_trip_and_are_validated():
    """A plane group's level sets: present ones as lowest, highest and a bitmap between them."""
    h = _header()
    sparse = sum(1 << v for v in range(3, 200, 2))  # odd levels 3..199
    h.planes[0].levels = [sparse, None, 1 << 255]
    data = container.pack(h)
    assert data[9] & container.HAS_LEVELS
    assert len(data) == len(container.pack(_header())) + 1 + (2 + 25) + (2 + 1) + 1  # + group 2's empty byte
    back = container.unpack(data)
    assert back.planes[0].levels == [sparse, None, 1 << 255]
    assert back.planes[1].levels == [None]
    assert container.unpack(container.pack(_header())).planes[0].levels == []
    field = container.pack_level_sets([sparse, None, 1 << 255], 3)
    assert field == bytes([0b101, 3, 199]) + (sparse >> 3).to_bytes(25, "little") + bytes([255, 255, 1])
    start = data.index(field)
    for bad in (bytes([0b1000]),  # a channel the group does not have
                bytes([0b101, 199, 3]),  # lowest above highest
                bytes([0b101, 2, 199]) + (sparse >> 2).to_bytes(25, "little"),  # level 2 (the lowest) unused
                bytes([0b101, 3, 200]) + (sparse >> 3).to_bytes(25, "little")):  # 200 (the highest) unused
        h2 = bytearray(data[:start] + bad + data[start + len(bad):])
        end = len(h2) - sum(len(s) for p in h.planes for s in p.segments)
        h2[end - 4:end] = zlib.crc32(bytes(h2[:end - 4])).to_bytes(4, "little")
        with pytest.raises(container.FormatError, match="level sets"):
            container.unpack(bytes(h2))
    with pytest.raises(ValueError, match="256-bit"):
        container.pack_level_sets([0], 1)
    with pytest.raises(ValueError, match="per channel"):
        container.pack_level_sets([1, 2], 3)


def test_small_image_header_is_compact(tiny_models):
    """A 28x28 grey file spends little on its header: the model is named by 8 bytes of its SHA-256
    (and, for a shipped model, by nothing else: test_shipped_models_are_found_by_digest)."""
    data, stats = codec.encode_image(from_array(natural_image(28, 28, 1, seed=3)), tiny_models.__getitem__,
                                     level_sets=False, calibrate=False)  # both are written only where they pay
    header = len(data) - stats.payload_bytes
    assert header <= 36 + len(tiny_models[1].name), header  # 35 fixed bytes (2-byte segment length)


def test_older_versions_still_decode(tiny_models, monkeypatch):
    """Files of format version 1 (32-byte model digests), 2 (no scale offsets), 3 (models always
    named) and 4 (word streams, every header field written) are still read."""
    a = natural_image(9, 10, 3, seed=5)
    old = {}
    for version in (1, 2, 3, 4):
        monkeypatch.setattr(container, "FORMAT_VERSION", version)
        if version == 1:
            monkeypatch.setattr(container, "IMAGE_DIGEST_BYTES", 32)
        old[version], _ = codec.encode_image(from_array(a), tiny_models.__getitem__, tile=8, adapt=version != 3)
        monkeypatch.undo()
    new, _ = codec.encode_image(from_array(a), tiny_models.__getitem__, tile=8)
    assert [d[4] for d in (*old.values(), new)] == [1, 2, 3, 4, container.FORMAT_VERSION]
    assert len(old[1]) == len(old[2]) + 24
    assert container.FORMAT_VERSION == container.CODED_CALIBRATION_VERSION == 14  # versions 9, 10 and 11 changed audio only
    assert container.IMAGE_LAYOUT_VERSION == container.CODED_CALIBRATION_VERSION
    assert len(new) < len(old[4])  # a compact header and a trimmed stream
    assert container.unpack(old[1]).planes[0].model_digest == tiny_models[3].digest
    assert [api.info(d)["format_version"] for d in (*old.values(), new)] == [1, 2, 3, 4, 14]
    for data in (*old.values(), new):
        back = codec.decode_image(data, lambda name, d: tiny_models[3] if tiny_models[3].matches(d) else None)
        assert np.array_equal(back.pixels, a)


def test_shipped_models_are_found_by_digest(monkeypatch):
    """From version 4 a shipped model is not named in the header (its 8-byte digest finds it); a
    version-3 file names it.  Both decode; an unnamed digest that no shipped model has is a clear error."""
    a = natural_image(6, 5, 3, seed=2)
    files = {}
    for version in (3, 4):
        monkeypatch.setattr(container, "FORMAT_VERSION", version)
        files[version], _ = codec.encode_image(from_array(a))
        monkeypatch.undo()
    files[5], _ = codec.encode_image(from_array(a))
    name = zoo.DEFAULTS[3]
    assert container.unpack(files[3]).planes[0].model_name == name
    assert len(files[3]) == len(files[4]) + len(name)
    for data in files.values():
        if data[4] >= 4:
            assert container.unpack(data).planes[0].model_name == ""
            assert api.info(data)["models"][0]["name"] == name
        assert np.array_equal(codec.decode_image(data).pixels, a)
        assert np.array_equal(api.decompress(data, model=name), a)
    h = container.unpack(files[5])
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


@pytest.fixture(scope="module", params=["plain", "level sets", "calibration"])
def sample(request, tiny_models):
    """A small RGB file: plain, with level sets in its header (its levels are all multiples of
    4, so restricting the tables saves more than the sets cost), or with a Rice-coded
    calibration (forced: the fit would not pay on so small an image)."""
    a = natural_image(9, 10, 3, seed=7)
    if request.param == "level sets":
        a = a // 4 * 4
    n = num_params(3, tiny_models[3].config.mixtures)
    cal = calibration.Calibration(tuple(64 * (i % 9 - 4) for i in range(n)), tuple(8 * (i % 31 - 15) for i in range(n)))
    with pytest.MonkeyPatch.context() as mp:
        if request.param == "calibration":
            mp.setattr(calibration, "fit", lambda params, tiles, inside, shifts=None: cal)
        data, _ = codec.encode_image(from_array(a), tiny_models.__getitem__, tile=8, group=2,
                                     level_sets=request.param == "level sets")
    assert bool(data[9] & container.HAS_LEVELS) == (request.param == "level sets")
    assert bool(data[9] & container.HAS_CALIBRATION) == (request.param == "calibration")
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


#: the first 8 bytes of each shipped model's SHA-256 as files written by earlier releases record
#: them: a change to the model files, the digest or a config's serialisation must not move them
SHIPPED_DIGESTS = {
    "pixelcnn-rgb3": "4fa29b4dcc86aef3", "pixelcnn-rgb2": "db7b0a1347ca3b12", "pixelcnn-rgb": "ef51d69c0a455d2f",
    "pixelcnn-gray": "1cfdbd7eb90de724", "pixelcnn-fashion28": "a5c5493de91f9ffe", "pixelsnail": "ce63772137333a31",
    "pixelcnn-multires": "4aa58313f3ddeef1", "wavenet-audio": "2ab40a9ee0ef5d42", "wavenet-audio2": "d24814d89469baa1",
    "wavenet-speech8k": "3d16c59dc6389961", "pixelcnn-gray2": "1e282dd14b86126f", "pixelcnn-rgb4": "c03e04c62d9ee2e0",
    "wavenet-speech8k2": "e77679e9adca2913", "pixelcnn-rgb5": "f385858d1f7f3a2f",
    "wavenet-speech8k3": "4fa411943867e55d", "pixelcnn-gray3": "ff4d6dd408c1c46e", "pixelcnn-rgb6": "88ba32df7c35ef7a",
    "pixelcnn-rgb7": "8db8c45ab68d96ba", "pixelcnn-rgb8": "f13b3b075833042a", "pixelcnn-gray4": "3ff811aa5951caf8",
    "pixelcnn-rgb9": "d01e1cb12c325ccf",
}


@pytest.mark.parametrize("name", sorted(SHIPPED_DIGESTS))
def test_shipped_models_keep_their_digests(name):
    assert zoo.resolve(name).digest[:8].hex() == SHIPPED_DIGESTS[name]
