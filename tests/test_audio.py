"""Audio: the exact WaveNet (batched == cached), the two-stage head, and bit-exact round trips."""

import zlib

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from arcompress import audio_codec, audiofile, container, zoo
from arcompress.audio_head import ExactAudioHead, chunk_lpc, exact_lpc_step, predictor_windows, residual
from arcompress.audio_modes import EXACT, REF_FULL, REF_MASK, REF_NONE, REF_TAPS, VERBATIM, pack_modes, unpack_modes
from arcompress.audiofile import AudioInfo
from arcompress.cli import main
from arcompress.coder import DecodeError
from arcompress.head import PRECISION
from arcompress.wavenet import CachedDecoder, embed_fixed, embed_step, forward

from conftest import AUDIO_WORST_CASES, tone

SUBTYPE = {8: "PCM_U8", 16: "PCM_16", 24: "PCM_24"}


def roundtrip(model, native, bits=16, rate=16000, chunk=128, group=2, workers=1):
    """Encode native samples with ``model`` and decode them; returns (decoded, bytes, stats)."""
    info = AudioInfo(rate, native.shape[1], native.shape[0], bits, "WAV", SUBTYPE[bits])
    blocks = lambda: iter([native[i:i + 300] for i in range(0, len(native), 300)])  # noqa: E731
    parts = list(audio_codec.encode_stream(model, info, blocks, chunk=chunk, group=group))
    stats = parts.pop()
    data = b"".join(parts)
    gen = audio_codec.decode_stream(container.audio_reader(data), lambda n, d: model, workers=workers)
    next(gen)
    out = list(gen)
    back = np.concatenate(out) if out else np.zeros((0, native.shape[1]), np.int32)
    return back, data, stats


@pytest.mark.parametrize("which", ["tiny", "loud", "cross"])
def test_cached_network_equals_batched(audio_models, which):
    """Step-by-step (queues) and whole-stream passes give identical parameters and predictions."""
    model = audio_models[which]
    ops, cfg = model.ops, model.config
    x = torch.from_numpy(np.concatenate([tone(60, 3, seed=1).T, AUDIO_WORST_CASES["square"](60, 2, 16).T]))
    has_ref = torch.tensor([False, True, True, False, True])
    ref = torch.roll(x, 1, 0) * has_ref.view(-1, 1)
    pred = chunk_lpc(x, torch.full((5,), 60), cfg.lpc, ref, has_ref, cfg.lpc_cross)
    assert pred.cross.shape == (5, cfg.lpc_cross) and not pred.cross[~has_ref].any()
    lpc = pred.exact_prediction(x, ref)
    emb = embed_fixed(x, residual(x, lpc), ref, has_ref, 44100, ops.tables["mulaw"])
    params = forward(ops, emb)
    cache = CachedDecoder(ops, 5)
    coef = pred.coefficients()
    windows = predictor_windows(x, cfg.lpc, ref, cfg.lpc_cross)
    eprev = torch.zeros(5, dtype=torch.int64)
    for t in range(x.shape[1]):
        prev = x[:, t - 1] if t else torch.zeros(5, dtype=torch.int64)
        col = embed_step(prev, eprev, torch.roll(prev, 1, 0) * has_ref, has_ref, 44100, t, ops.tables["mulaw"])
        assert torch.equal(col, emb[:, :, t])
        assert torch.equal(cache.step(col), params[:, :, t]), f"step {t}"
        step_lpc = exact_lpc_step(windows[:, t], coef, pred.shift)
        assert torch.equal(step_lpc, lpc[:, t])
        eprev = residual(x[:, t], step_lpc)


def test_cross_taps_predict_a_channel_from_its_reference():
    """Two channels that differ by a little noise: with taps on the reference channel the second
    channel's prediction error is about that noise; without them it is far larger."""
    rng = np.random.default_rng(0)
    left = torch.from_numpy(tone(2000, 1, seed=7)[:, 0] + rng.integers(-800, 800, 2000)).view(1, -1)
    right = left + torch.from_numpy(rng.integers(-2, 3, (1, 2000)))
    lengths, yes = torch.tensor([2000]), torch.tensor([True])
    own = chunk_lpc(right, lengths, 8)
    both = chunk_lpc(right, lengths, 8, left, yes, 3)
    err_own = (right - (own.exact_prediction(right) >> 8)).double().abs().mean()
    err_both = (right - (both.exact_prediction(right, left) >> 8)).double().abs().mean()
    assert err_both < 2.0 < 100 < err_own
    assert abs(float(both.cross[0, 0]) / 2 ** int(both.shift[0]) - 1) < 1e-3  # r[t], weight one
    none = chunk_lpc(right, lengths, 8, left, torch.tensor([False]), 3)
    assert not none.cross.any() and torch.equal(none.taps, own.taps)


def test_cross_taps_are_stored_for_reference_streams_only(audio_models):
    """A mono file costs no cross taps; each stream with a reference channel stores them: 2 bytes
    per tap in versions 1-6, Rice-coded (fewer bytes) from version 7."""
    cross, tiny = audio_models["cross"], audio_models["tiny"]
    for native, extra in [(tone(300, 1), 0), (tone(300, 3), 2 * 2 * 11)]:
        back, _, _ = roundtrip(cross, native, chunk=300, group=1)
        assert np.array_equal(back, native)
        size = {v: [len(audio_codec.pack_predictors(*_predictors(m, native, v), version=v)) for m in (cross, tiny)]
                for v in (6, 7)}
        assert size[6][0] - size[6][1] == extra
        assert (size[7][0] - size[7][1] > 0) == bool(extra) and (extra or size[7][0] == size[7][1])
        assert sum(size[7]) < sum(size[6])


def _predictors(model, native, version=None):
    lay = audio_codec._Layout(len(native), native.shape[1], 300)
    m = lay.streams(native.astype(np.int64))
    cfg = model.config
    pred = chunk_lpc(m, lay.lengths(), cfg.lpc, lay.refs(m), lay.has_ref, cfg.lpc_cross,
                     coded=audio_codec.coded_taps(version))
    return pred, lay.has_ref


def test_head_tables_are_valid_and_exact(audio_models):
    """Every table sums to 2**24 with entries >= 1; the low-byte tables cover their bin only."""
    model = audio_models["loud"]
    params = torch.randint(-40000, 40000, (64, 12), generator=torch.Generator().manual_seed(0))
    head = ExactAudioHead(model.ops.tables, 3)
    head.start(params, torch.randint(-(40000 << 8), 40000 << 8, (64,)), torch.randint(-(1 << 20), 1 << 20, (64,)))
    hi = head.high_freqs()
    assert hi.shape == (64, 256) and bool((hi >= 1).all())
    assert bool((hi.sum(1) == 1 << PRECISION).all())
    for step_bits in (0, 3, 7):
        lo = head.low_freqs(torch.arange(64) * 4, step_bits)
        assert bool((lo.sum(1) == 1 << PRECISION).all()) and bool((lo >= 1).all())
        assert bool((lo[:, 256 >> step_bits:] == 1).all())  # values not on the 2**step grid


@pytest.mark.parametrize("name", sorted(AUDIO_WORST_CASES))
@pytest.mark.parametrize("bits,channels", [(16, 1), (16, 2), (8, 1), (24, 3)])
def test_worst_case_roundtrips(audio_models, name, bits, channels):
    native = AUDIO_WORST_CASES[name](300, channels, bits)
    for which in ("tiny", "loud", "cross"):
        back, _, _ = roundtrip(audio_models[which], native, bits)
        assert np.array_equal(back, native), which


@pytest.mark.parametrize("frames,channels", [(0, 1), (1, 1), (1, 5), (2, 3), (257, 1)])
def test_tiny_files(audio_models, frames, channels):
    native = tone(frames, channels)
    back, data, _ = roundtrip(audio_models["tiny"], native)
    assert back.shape == native.shape and np.array_equal(back, native)


def test_wasted_bits_and_24_bit_low_byte(audio_models):
    """Samples on a 2**k grid cost fewer bits; 24-bit files with a zero low byte skip it."""
    model = audio_models["tiny"]
    x = tone(600, 1)
    grid = (x >> 4) << 4
    back, data_grid, st_grid = roundtrip(model, grid)
    assert np.array_equal(back, grid)
    _, data_full, st_full = roundtrip(model, x)
    assert st_grid.nll_bits < st_full.nll_bits - 600 * 3
    x24 = x << 8
    back, data24, _ = roundtrip(model, x24, bits=24)
    assert np.array_equal(back, x24) and abs(len(data24) - len(data_full)) < 16
    assert container.read_audio_header(container.audio_reader(data24)).low_bits == 0


def test_older_audio_versions_still_decode(audio_models, monkeypatch):
    """Version 4 wrote constriction's whole little-endian words; version 5 trims them; version 6
    writes a compact header; version 7 Rice-codes the predictors; version 8 (image level sets)
    writes audio as version 7 did; version 9 adds the stream modes (one byte per segment when
    every stream has mode 0); version 10 each stream's predictor order; version 11 verbatim streams
    (a tone has none, so the same bytes as version 10 but for the version); versions 12 (image
    uniform tiles), 13 (image calibrations) and 14 (coded calibrations) write audio as 11 did.
    All decode."""
    x = tone(600, 2, seed=3)
    old = {}
    for version in (4, 5, 6, 7, 8, 9, 10, 11, 12, 13):
        monkeypatch.setattr(container, "FORMAT_VERSION", version)
        old[version] = roundtrip(audio_models["tiny"], x)[1]
        monkeypatch.undo()
    back, new, _ = roundtrip(audio_models["tiny"], x)
    assert [d[4] for d in (*old.values(), new)] == [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
    assert len(old[7]) < len(old[6]) < len(old[5]) < len(old[4])
    assert _segments(old[10]) == _segments(old[11]) == _segments(old[12]) == _segments(old[13]) == _segments(new)
    assert len(old[10]) == len(old[12]) == len(old[13]) == len(new)
    assert len(old[8]) == len(old[7])  # the same bytes but for the version and the header CRC
    assert len(old[5]) - len(old[6]) >= 24 + 20  # the digest's last 24 bytes and the metadata JSON
    for data in old.values():
        gen = audio_codec.decode_stream(container.audio_reader(data), lambda n, d: audio_models["tiny"])
        next(gen)
        assert np.array_equal(np.concatenate(list(gen)), x)
    assert np.array_equal(back, x)


def _audio_header(**changes):
    h = container.AudioHeader(1, 2, 44100, 123456, 16, 0, 0, *container.audio_default_plan(container.FORMAT_VERSION),
                              0xDEADBEEF,
                              {"format": "FLAC", "subtype": "PCM_16", "tags": {}}, "", bytes(range(32)))
    for k, v in changes.items():
        setattr(h, k, v)
    return h


@pytest.mark.parametrize("changes", [
    {},
    {"model_name": "my-model"},
    {"chunk": 1024, "group": 3},
    {"bits": 24, "low_bits": 8, "wasted": 5, "channels": 6, "rate": 8000},
    {"bits": 8, "wasted": 16, "meta": {"format": "WAV", "subtype": "PCM_U8", "tags": {}}},
    {"meta": {"format": "FLAC", "subtype": "PCM_16", "tags": {"title": "t\u00e9"}}},
    {"meta": {"format": "WAV", "subtype": "PCM_S8", "tags": {}}},  # a pair the table lacks
])
def test_compact_audio_header_round_trip(changes):
    """Every field of a version-6 audio header is read back as written (the digest to its first
    8 bytes); the plain case (a shipped model, default chunking, a common container, no tags) is
    25 bytes plus the rate and frame varints."""
    h = _audio_header(**changes)
    data = container.pack_audio_header(h)
    r = container.audio_reader(data + b"rest")
    back = container.read_audio_header(r)
    assert r.pos == len(data)
    h.model_digest = h.model_digest[:container.IMAGE_DIGEST_BYTES]
    assert back == h
    if not changes:
        assert len(data) == 7 + 1 + 1 + 3 + 3 + 1 + 4 + 1 + 8 + 4 == 33


def test_compact_audio_header_rejects_bad_fields():
    data = bytearray(container.pack_audio_header(_audio_header()))
    for offset, value, message in ((7, 0x80, "flags"), (15, 3, "parameters"), (20, 200, "container")):
        bad = bytearray(data)
        bad[offset] = value
        bad[-4:] = zlib.crc32(bytes(bad[:-4])).to_bytes(4, "little")
        with pytest.raises(container.FormatError, match=message):
            container.read_audio_header(container.audio_reader(bytes(bad)))


def test_batch_composition_and_workers(audio_models):
    """Different chunk groupings decode exactly; 1 and 2 decoding processes give the same samples."""
    model = audio_models["tiny"]
    x = tone(600, 2, seed=4)
    sizes = set()
    for chunk, group in [(64, 1), (64, 3), (128, 2), (300, 1)]:
        back, data, _ = roundtrip(model, x, chunk=chunk, group=group)
        assert np.array_equal(back, x), (chunk, group)
        sizes.add(len(data))
        back2, _, _ = roundtrip(model, x, chunk=chunk, group=group, workers=2)
        assert np.array_equal(back2, x)
    assert len(sizes) > 1  # chunking changes what is coded, not whether it decodes


def test_segments_stepped_together_decode_as_alone(monkeypatch):
    """A decoding process steps several segments together (LOCKSTEP_STREAMS streams at most):
    the samples are those of decoding each segment alone, with segments whose longest predictor
    orders differ (a period of 61 samples, then noise) and a short last segment; one and two
    processes agree."""
    rng = np.random.default_rng(8)
    periodic = np.round(np.resize(rng.normal(0, 3000, 61), 1000) + rng.normal(0, 4, 1000))
    mono = np.concatenate([periodic, rng.integers(-3000, 3000, 1300)])
    x = np.stack([mono, mono // 2 + rng.integers(-50, 50, 2300)], 1).astype(np.int32)
    model = zoo.resolve(zoo.AUDIO_DEFAULT)
    together, data, _ = roundtrip(model, x, chunk=250, group=2)  # 5 segments, one lock-step
    assert np.array_equal(together, x)
    reader = container.audio_reader(data)
    h = container.read_audio_header(reader)
    info = AudioInfo(h.rate, h.channels, h.frames, h.bits, "WAV", "PCM_16")
    segs = [(container.read_segment(reader), min(500, h.frames - 500 * k)) for k in range(h.segment_count())]
    orders = []
    for payload, _ in segs:
        lay = audio_codec._Layout(500, 2, 250)
        modes, size = unpack_modes(payload, 2, lay.B * 2, h.version)
        pred, _ = audio_codec.unpack_predictors(payload[size:], audio_codec.uses_reference(modes, lay.has_ref),
                                                model.config.lpc, model.config.lpc_cross, h.version)
        orders.append(pred.order)
    assert len(segs) == 5 and segs[-1][1] == 300 and len(set(orders)) > 1
    alone = [audio_codec.decode_segments(model, [seg], info, h.wasted, h.low_bits, h.chunk, h.version)[0]
             for seg in segs]
    assert np.array_equal(np.concatenate(alone), x)
    both = audio_codec.decode_segments(model, segs[1:4], info, h.wasted, h.low_bits, h.chunk, h.version)
    assert all(np.array_equal(a, b) for a, b in zip(both, alone[1:4]))
    monkeypatch.setattr(audio_codec, "LOCKSTEP_STREAMS", 1)  # one segment per job
    back, _, _ = roundtrip(model, x, chunk=250, group=2, workers=2)
    assert np.array_equal(back, x)


def test_encoder_is_thread_independent(audio_models):
    model = audio_models["loud"]
    x = AUDIO_WORST_CASES["noise"](1500, 2, 16)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _, one, _ = roundtrip(model, x)
        torch.set_num_threads(2)
        _, two, _ = roundtrip(model, x)
    finally:
        torch.set_num_threads(n)
    assert one == two


def test_written_bits_match_model(audio_models):
    x = tone(4000, 1, seed=2)
    _, data, stats = roundtrip(audio_models["tiny"], x, chunk=1024, group=4)
    # the range coder adds at most a few words per segment to the ideal length; a trimmed
    # stream's last word may end a few bits below it
    assert -8 <= stats.payload_bytes * 8 - stats.nll_bits < 0.002 * stats.nll_bits + 64


@pytest.mark.parametrize("which", ["tiny", "cross"])
def test_corrupt_and_truncated_files_fail_cleanly(audio_models, which):
    model = audio_models[which]
    x = tone(200, 2, seed=6)
    _, data, _ = roundtrip(model, x, chunk=64, group=2)
    rng = np.random.default_rng(0)
    cases = [data[:n] for n in range(0, len(data), max(1, len(data) // 25))]
    for _ in range(30):
        b = bytearray(data)
        i = int(rng.integers(0, len(b)))
        b[i] ^= 1 << int(rng.integers(0, 8))
        cases.append(bytes(b))
    for bad in cases:
        try:
            gen = audio_codec.decode_stream(container.audio_reader(bad), lambda n, d: model, workers=1)
            next(gen)
            out = list(gen)
        except (container.FormatError, DecodeError):
            continue
        assert np.array_equal(np.concatenate(out), x)  # a flip that changes nothing decoded


# ----------------------------------------------------------------------------- stream modes

def test_stream_modes_pack_and_reject_corrupt_fields():
    rng = np.random.default_rng(4)
    for streams, channels in [(1, 1), (6, 2), (9, 3)]:
        first = torch.arange(streams) % channels == 0
        ref = torch.tensor(rng.choice([REF_FULL, REF_NONE, REF_TAPS], streams))
        modes = torch.where(first, 0, ref) | torch.tensor(rng.choice([0, EXACT], streams))
        data = pack_modes(modes)
        back, size = unpack_modes(data + b"\x33 rest", channels, streams, 10)
        assert size == len(data) and torch.equal(back, modes)
    assert pack_modes(torch.zeros(5, dtype=torch.int64)) == b"\x00"
    for bad in [b"", b"\x02", b"\x01", b"\x01\x30", b"\x01\x10", b"\x01\x08", b"\x01\x03", b"\x01\x00\x01"]:
        with pytest.raises(container.FormatError):
            unpack_modes(bad, 2, 3 if bad == b"\x01\x00\x01" else 2, 10)
    # format 11: a stream may be verbatim (the first channel too), never verbatim and exact
    for good, modes in [(b"\x01\x08", [0, VERBATIM]), (b"\x01\x89", [VERBATIM, VERBATIM | REF_NONE])]:
        assert unpack_modes(good, 2, 2, 11)[0].tolist() == modes
        with pytest.raises(container.FormatError):
            unpack_modes(good, 2, 2, 10)
    for bad in [b"\x01\x0c", b"\x01\xc0", b"\x01\x0b", b"\x01\x18"]:
        with pytest.raises(container.FormatError):
            unpack_modes(bad, 2, 2, 11)


def test_copied_channel_and_silence_cost_no_symbols(audio_models):
    """A channel equal to the one before it, and a silent chunk, are exact predictions: their
    streams are coded without symbols, so a stereo copy costs about what the mono file costs."""
    model = audio_models["cross"]
    x = tone(600, 1, seed=8)
    x[128:256] = 0  # one silent chunk
    back, mono, _ = roundtrip(model, x, chunk=128, group=5)
    assert np.array_equal(back, x)
    st = np.concatenate([x, x], 1)
    back, stereo, _ = roundtrip(model, st, chunk=128, group=5)
    assert np.array_equal(back, st)
    modes, _ = unpack_modes(_first_segment(stereo), 2, 10, container.FORMAT_VERSION)
    exact_first = (modes[0::2] & EXACT) > 0
    assert (modes[1::2] & EXACT).all() and exact_first.tolist() == [False, True, False, False, False]
    assert len(stereo) - len(mono) < 5 * 12  # the copy's predictors only (at most 12 bytes a chunk)


@pytest.mark.parametrize("bits,channels,wasted", [(16, 1, 0), (16, 2, 2), (8, 1, 0), (24, 2, 0)])
def test_full_scale_noise_costs_no_more_than_its_pcm(audio_models, monkeypatch, bits, channels, wasted):
    """Format 11: where the model would code a stream in more bits than the samples' own width
    (full-scale white noise), the stream is coded verbatim, so the file is about as large as the
    PCM (a few bytes per segment of header, modes and predictors); format 10 wrote far more."""
    model = audio_models["cross"]
    x = AUDIO_WORST_CASES["noise"](2000, channels, bits - wasted) << wasted
    back, data, _ = roundtrip(model, x, bits, chunk=500, group=2)
    assert np.array_equal(back, x)
    pcm = x.size * (bits - wasted) / 8
    assert len(data) <= pcm + 150
    lay = audio_codec._Layout(1000, channels, 500)
    modes, _ = unpack_modes(_first_segment(data), channels, lay.B * channels, container.FORMAT_VERSION)
    assert bool((modes & VERBATIM).all())
    monkeypatch.setattr(container, "FORMAT_VERSION", 10)
    back10, data10, _ = roundtrip(model, x, bits, chunk=500, group=2)
    assert np.array_equal(back10, x) and len(data10) > pcm * 1.05


def test_streams_get_their_own_predictor_orders(monkeypatch):
    """Format 10: in one segment, a channel that repeats every 61 samples gets a predictor of 64
    taps or more and a noise channel a short one; the file decodes exactly and (with a trained
    model: the tiny test models centre nothing on the prediction) is far smaller than with the
    model's 16 taps everywhere (format 9)."""
    rng = np.random.default_rng(4)
    periodic = np.round(np.resize(rng.normal(0, 3000, 61), 2000) + rng.normal(0, 4, 2000))
    x = np.stack([periodic, rng.integers(-3000, 3000, 2000)], 1).astype(np.int32)
    model = zoo.resolve(zoo.AUDIO_DEFAULT)
    back, data, _ = roundtrip(model, x, chunk=1000, group=2)
    assert np.array_equal(back, x)
    segment = _first_segment(data)
    modes, size = unpack_modes(segment, 2, 4, container.FORMAT_VERSION)
    pred, _ = audio_codec.unpack_predictors(segment[size:], audio_codec.uses_reference(modes, torch.tensor(
        [False, True, False, True])), model.config.lpc, model.config.lpc_cross, container.FORMAT_VERSION)
    assert (pred.orders[0::2] >= 64).all() and (pred.orders[1::2] <= 8).all()
    monkeypatch.setattr(container, "FORMAT_VERSION", 9)
    back9, data9, _ = roundtrip(model, x, chunk=1000, group=2)
    assert np.array_equal(back9, x) and len(data) < 0.8 * len(data9)


def test_order_choice_never_costs_more_than_either_order(audio_models, monkeypatch):
    """Per stream the encoder keeps the estimated predictor order or the model's own, whichever
    codes it in fewer bits: the file is no larger (to rounding) than with either everywhere."""
    model = audio_models["cross"]
    rng = np.random.default_rng(6)
    periodic = np.round(np.resize(rng.normal(0, 3000, 37), 1000) + rng.normal(0, 30, 1000))
    x = np.stack([periodic, tone(1000, 1, seed=12)[:, 0]], 1).astype(np.int32)
    back, _, st_both = roundtrip(model, x, chunk=250, group=4)
    assert np.array_equal(back, x)
    with monkeypatch.context() as mp:
        mp.setattr(audio_codec, "choose_orders", lambda *a, **k: a[5])  # the estimate's orders
        _, _, st_est = roundtrip(model, x, chunk=250, group=4)

    def own_order(m, lengths, cfg, ref, use_ref):
        pred = chunk_lpc(m, lengths, cfg.lpc, ref, use_ref, cfg.lpc_cross)
        pred.orders = torch.full((len(m),), cfg.lpc)
        return pred

    monkeypatch.setattr(audio_codec, "encoder_predictor", own_order)
    back, _, st_own = roundtrip(model, x, chunk=250, group=4)
    assert np.array_equal(back, x)
    assert st_both.nll_bits <= min(st_est.nll_bits, st_own.nll_bits) + 16
    assert st_est.nll_bits != st_own.nll_bits


def _segments(data: bytes) -> list[bytes]:
    r = container.audio_reader(data)
    h = container.read_audio_header(r)
    return [container.read_segment(r) for _ in range(h.segment_count())]


def _first_segment(data: bytes) -> bytes:
    r = container.audio_reader(data)
    container.read_audio_header(r)
    return container.read_segment(r)


@pytest.mark.parametrize("channels", [2, 3])
def test_every_stream_mode_decodes_exactly(audio_models, monkeypatch, channels):
    """Whatever modes the encoder chooses (here at random, the choice's costs replaced by random
    numbers), the decoder rebuilds the same tables: files round-trip, and a channel coded without
    its reference changes the bytes."""
    model = audio_models["cross"]
    x = tone(700, channels, seed=11)
    _, chosen, _ = roundtrip(model, x, chunk=100, group=7)
    rng = np.random.default_rng(2)
    monkeypatch.setattr(audio_codec, "_stream_bits",
                        lambda head, params, *a: torch.from_numpy(rng.random(params.shape[0]) * 1e6))
    for _ in range(3):
        back, data, _ = roundtrip(model, x, chunk=100, group=7)
        assert np.array_equal(back, x)
        modes, _ = unpack_modes(_first_segment(data), channels, 7 * channels, container.FORMAT_VERSION)
        later = modes[torch.arange(7 * channels) % channels > 0] & REF_MASK
        assert {REF_FULL, REF_NONE, REF_TAPS} >= set(later.tolist()) and len(set(later.tolist())) > 1
        assert data != chosen


def test_mode_choice_never_costs_more_than_the_reference(audio_models, monkeypatch):
    """The modes the encoder chooses write no more (to a few bytes of rounding) than coding every
    channel with its reference, as versions 1-8 did."""
    model = audio_models["cross"]
    rng = np.random.default_rng(5)
    left = tone(1000, 1, seed=12)
    x = np.concatenate([left, rng.integers(-3000, 3000, (1000, 1)).astype(np.int32)], 1)  # unrelated channels
    _, chosen, st_chosen = roundtrip(model, x, chunk=250, group=4)
    # every stream in mode 0 (a[4]: the segment's streams)
    monkeypatch.setattr(audio_codec, "choose_modes", lambda *a, **k: (torch.zeros(len(a[4]), dtype=torch.int64), a[5]))
    back, fixed, st_fixed = roundtrip(model, x, chunk=250, group=4)
    assert np.array_equal(back, x)
    assert st_chosen.nll_bits <= st_fixed.nll_bits + 16
    assert len(chosen) <= len(fixed) + 2


# ----------------------------------------------------------------------------- files and CLI

def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("ext,subtype,channels", [(".wav", "PCM_16", 2), (".flac", "PCM_24", 1),
                                                  (".aiff", "PCM_16", 3), (".wav", "PCM_U8", 1),
                                                  (".flac", "PCM_S8", 2)])
def test_cli_roundtrip(tmp_path, audio_models, ext, subtype, channels):
    bits = {"PCM_16": 16, "PCM_24": 24, "PCM_U8": 8, "PCM_S8": 8}[subtype]
    native = tone(400, channels, bits, seed=channels)
    src = tmp_path / f"take{ext}"
    with sf.SoundFile(src, "w", 22050, channels, subtype) as f:
        f.title = "a take"
        f.write(native << (32 - bits))
    model = audio_models["tiny"].source
    r = run("encode", "--model", model, "--verify", src)
    assert r.exit_code == 0, r.output
    assert "bits/sample" in r.output and "verified" in r.output
    r = run("info", f"{src}.arc")
    assert r.exit_code == 0 and "22050 Hz" in r.output and subtype in r.output
    src.rename(tmp_path / "orig")
    r = run("decode", "--model", model, f"{src}.arc")
    assert r.exit_code == 0, r.output
    with sf.SoundFile(src) as f:
        assert (f.samplerate, f.channels, f.subtype, f.title) == (22050, channels, subtype, "a take")
        back = f.read(dtype="int32", always_2d=True) >> (32 - bits)
    assert np.array_equal(back, native)
    r = run("decode", "--model", model, f"{src}.arc", "-o", tmp_path / "as.wav")
    assert r.exit_code == 0, r.output
    assert sf.info(tmp_path / "as.wav").format == "WAV"


def _add_chunk(path, cid: bytes, body: bytes, order: str) -> None:
    """Append a chunk to a RIFF / FORM file and fix the outer size."""
    data = bytearray(path.read_bytes())
    data += cid + len(body).to_bytes(4, order) + body + (b"\0" if len(body) % 2 else b"")
    data[4:8] = (len(data) - 8).to_bytes(4, order)
    path.write_bytes(bytes(data))


def test_cli_names_metadata_it_does_not_keep(tmp_path, audio_models):
    """Cue points, broadcast-wave and ID3 chunks are not kept: the CLI says so (tags are kept)."""
    native = tone(300, 1, 16)
    wav, aiff, flac = tmp_path / "a.wav", tmp_path / "a.aiff", tmp_path / "a.flac"
    for p in (wav, aiff, flac):
        with sf.SoundFile(p, "w", 8000, 1, "PCM_16") as f:
            f.title = "kept"
            f.write(native << 16)
    _add_chunk(wav, b"cue ", b"\0" * 4, "little")
    _add_chunk(wav, b"bext", b"x" * 7, "little")
    _add_chunk(aiff, b"ID3 ", b"\0" * 10, "big")
    assert audiofile.dropped_chunks(wav) == ["cue", "bext"]
    assert audiofile.dropped_chunks(aiff) == ["ID3"]
    assert audiofile.dropped_chunks(flac) == []
    pic = tmp_path / "p.flac"  # a FLAC with an APPLICATION block after STREAMINFO
    data = bytearray(flac.read_bytes())
    last = data[4] & 0x80
    data[4] &= 0x7F
    pic.write_bytes(bytes(data[:42]) + bytes([2 | last]) + (8).to_bytes(3, "big") + b"TEST1234" + bytes(data[42:]))
    assert audiofile.dropped_chunks(pic) == ["APPLICATION"]
    assert np.array_equal(sf.read(pic, dtype="int32")[0] >> 16, native[:, 0])
    assert audiofile.dropped_chunks(tmp_path / "missing.wav") == []
    model = audio_models["tiny"].source
    r = run("encode", "--model", model, wav)
    assert r.exit_code == 0 and "metadata not kept: cue, bext" in r.output
    r = run("encode", "--model", model, flac)
    assert r.exit_code == 0 and "not kept" not in r.output


def test_cli_audio_errors(tmp_path, audio_models):
    model = audio_models["tiny"].source
    fl = tmp_path / "float.wav"
    sf.write(fl, np.zeros(100, np.float32), 8000, subtype="FLOAT")
    r = run("encode", "--model", model, fl)
    assert r.exit_code == 1 and "floating-point" in r.output and not (tmp_path / "float.wav.arc").exists()
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF nonsense")
    r = run("encode", "--model", model, bad)
    assert r.exit_code == 1 and "not a readable audio file" in r.output
    good = tmp_path / "good.wav"
    sf.write(good, tone(500, 1).astype(np.int16), 8000, subtype="PCM_16")
    assert run("encode", "--model", model, good).exit_code == 0
    r = run("encode", "--model", model, good)
    assert r.exit_code == 1 and "already exists" in r.output
    r = run("encode", good, "-o", tmp_path / "x.arc", "--force", "--model", "pixelcnn-rgb")
    assert r.exit_code == 1 and "image model" in r.output
    data = (tmp_path / "good.wav.arc").read_bytes()
    (tmp_path / "cut.wav.arc").write_bytes(data[:-7])
    r = run("decode", "--model", model, tmp_path / "cut.wav.arc")
    assert r.exit_code == 1 and not (tmp_path / "cut.wav").exists()
    r = run("decode", "--model", model, tmp_path / "good.wav.arc", "-o", tmp_path / "out.mp3")
    assert r.exit_code == 1 and "cannot write audio" in r.output


def test_api_arrays(audio_models):
    import arcompress

    x = tone(1000, 2).astype(np.int16)
    data = arcompress.compress_audio(x, 8000, model=audio_models["tiny"].source)
    back, rate = arcompress.decompress_audio(data, model=audio_models["tiny"].source)
    assert rate == 8000 and back.dtype == np.int16 and np.array_equal(back, x)
    assert arcompress.info(data)["kind"] == "audio"
    with pytest.raises(ValueError):
        arcompress.compress_audio(np.zeros(5, np.float32), 8000)


def test_shipped_audio_model_is_found_by_its_digest():
    """With the default (shipped) model a compact header names no model: 34 bytes for a short 8 kHz
    mono file (31 with the default plan, + 3 for the shorter speech chunk it records), and decoding
    finds the model among the shipped ones by its digest."""
    import arcompress

    x = tone(300, 1, seed=4).astype(np.int16)
    data = arcompress.compress_audio(x, 8000)
    r = container.audio_reader(data)
    h = container.read_audio_header(r)
    assert h.model_name == "" and zoo.resolve(zoo.audio_default(8000)).matches(h.model_digest)
    assert (h.chunk, h.group) == (audio_codec.default_chunk(8000), audio_codec.DEFAULT_GROUP) != \
        container.audio_default_plan(h.version)
    assert r.pos == 7 + 1 + 1 + 2 + 2 + 1 + 3 + 4 + 1 + 8 + 4 == 34
    back, rate = arcompress.decompress_audio(data)
    assert rate == 8000 and np.array_equal(back[:, 0], x[:, 0])
    assert arcompress.info(data)["models"][0]["name"] == zoo.audio_default(8000) == "wavenet-speech8k3"
    assert zoo.audio_default(44100) == zoo.AUDIO_DEFAULT
    assert audio_codec.default_chunk(44100) == audio_codec.DEFAULT_CHUNK  # music keeps the compact plan


def test_reweighted_predictor_fits_the_quiet_part_too():
    """A loud noise burst then a quiet resonance: least squares spends its taps on the burst;
    the reweighted fit predicts the quiet part far better, and the log-errors a coder pays for
    (its scale follows the local level) fall."""
    rng = np.random.default_rng(1)
    quiet = np.zeros(3800)
    for t in range(2, 3800):  # a resonance: x[t] = 1.8 x[t-1] - 0.9 x[t-2] + noise
        quiet[t] = 1.8 * quiet[t - 1] - 0.9 * quiet[t - 2] + rng.normal(0, 3)
    x = torch.from_numpy(np.round(np.concatenate([rng.normal(0, 8000, 296), quiet])).astype(np.int64)).view(1, -1)
    lengths = torch.tensor([x.shape[1]])
    costs = {}
    for passes in (0, 3):
        pred = chunk_lpc(x, lengths, 8, passes=passes)
        err = (x - (pred.exact_prediction(x) >> 8)).double()
        costs[passes] = (float(torch.log2(1 + err[0, 400:].abs()).mean()), float(torch.log2(1 + err.abs()).mean()))
    assert costs[3][0] < costs[0][0] - 1.0  # the quiet part: over a bit less per sample
    assert costs[3][1] < costs[0][1]  # and the whole chunk
