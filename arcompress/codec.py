"""Image encode / decode: plan -> exact model -> head tables -> coder -> container, and back.

Symbol order inside a payload segment (one group of B tiles decoded in lock-step) is the
decoder's: for each pixel position (i, j) of the tile, for each channel c, the sub-pixels of
all tiles of the group that are inside the image at (i, j).
"""

from __future__ import annotations

import multiprocessing
import os
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from . import calibration, container, zoo
from . import fixedpoint as fp
from .coder import DecodeError, Decoder, Encoder
from .head import (LEVELS, PRECISION, SCALE_OFFSET_ZERO, SCALE_OFFSETS, UNIFORM_TILE, ExactHead,
                   choose_scale_offsets, exact_bits, freqs_from_masses, level_mask, levels_used, num_params, scale_offset,
                   tile_bits, uniform_freqs, uniform_pixel_bits)
from .media import ImageData, coded_planes, from_coded, to_coded
from .pixelcnn import ExactOps
from .plan import DEFAULT_GROUP, DEFAULT_TILE, MIN_SPLIT_GROUP, TilePlan, default_group  # noqa: F401
#: images smaller than this (pixels) decode in this process: forking costs more than it saves
PARALLEL_MIN_PIXELS = 1 << 15
#: tile rows of the encoder's forward pass per chunk (bounds memory)
FORWARD_CHUNK_PIXELS = 1 << 16
#: rows of head tables built at once (bounds memory: rows * mixtures * 257 int64)
HEAD_CHUNK_ROWS = 1 << 14
#: pixels of a plane group on which the encoder measures what level sets would save
LEVEL_SAMPLE_PIXELS = 1 << 14
#: a sampled estimate of a level set's saving within this many standard errors of the set's
#: cost is measured again on LEVEL_SAMPLE_GROWTH times as many pixels (finally on all of them),
#: unless so many standard errors come to at most LEVEL_SAMPLE_TOLERANCE_BITS: then a wrong
#: call costs no more than that, and measuring more would cost seconds for bytes
LEVEL_SAMPLE_Z = 3.0
LEVEL_SAMPLE_GROWTH = 4
LEVEL_SAMPLE_TOLERANCE_BITS = 128
ALL_LEVELS = (1 << LEVELS) - 1


@dataclass
class EncodeStats:
    """What an encode measured: exact model NLL (bits) and the coded size."""

    nll_bits: float = 0.0
    payload_bytes: int = 0
    models: list[str] = field(default_factory=list)  # the model of each plane group
    uniform_channels: int = 0  # tiles' channels coded with uniform tables (format 12)
    calibrated_planes: int = 0  # plane groups whose model outputs are calibrated (format 13)


def _device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is available")
    if spec not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {spec!r} (use auto, cpu or cuda)")
    return torch.device(spec)


def _progress(total: int, desc: str, enabled: bool | None):
    """A pixel progress bar: shown if enabled, hidden if disabled, on a terminal only if None."""
    disable = {True: False, False: True, None: None}[enabled]
    return tqdm(total=total, desc=desc, unit="px", unit_scale=True, disable=disable, leave=False)


def exact_params(model: zoo.ExactModel, tiles: torch.Tensor, inside: torch.Tensor,
                 device: torch.device, bar=None) -> torch.Tensor:
    """Batched exact forward pass: tiles (N, C, h, w) uint8 -> params (N, P, h, w) int64 (CPU)."""
    ops = model.ops if device.type == "cpu" else _ops_on(model, device)
    n, _, h, w = tiles.shape
    per = max(1, FORWARD_CHUNK_PIXELS // (h * w))
    out = []
    for s in range(0, n, per):
        x = ops.embed(tiles[s:s + per].to(device), inside[s:s + per].to(device))
        out.append(model.net.forward(ops, x).to(torch.int64).cpu())
        if bar is not None:
            bar.update(int(inside[s:s + per].sum()))
    return torch.cat(out)


_gpu_ops: dict = {}


def _ops_on(model: zoo.ExactModel, device: torch.device) -> ExactOps:
    """The model's exact ops with weights and tables on ``device`` (cached)."""
    key = (model.digest, str(device))
    if key not in _gpu_ops:
        _gpu_ops[key] = model.net.ExactOps(model.config, model.tensors).to(device)
    return _gpu_ops[key]


#: format 12 on: the frequency (of 2**PRECISION) of UNIFORM_TILE among a segment's offset
#: indices: 12 bits where a tile's channel is coded uniformly, 0.0004 bits more on each other index
UNIFORM_TILE_FREQ = 1 << 12


def _offset_tables(n: int, version: int) -> torch.Tensor:
    """The tables of n scale-offset indices in a file of format ``version``: (n, SCALE_OFFSETS),
    equal (4 bits each), before version 12; from 12, (n, SCALE_OFFSETS + 1) with UNIFORM_TILE
    at UNIFORM_TILE_FREQ and the scale offsets sharing the rest equally."""
    if version < container.UNIFORM_TILES_VERSION:
        return torch.full((n, SCALE_OFFSETS), (1 << PRECISION) // SCALE_OFFSETS, dtype=torch.int64)
    row = torch.full((1, SCALE_OFFSETS + 1), ((1 << PRECISION) - UNIFORM_TILE_FREQ) // SCALE_OFFSETS,
                     dtype=torch.int64)
    row[0, UNIFORM_TILE] = UNIFORM_TILE_FREQ
    return row.expand(n, -1)


def _uniform_tiles(offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Offset indices (B, C) -> (the log-scale offsets (B, C) in fixed point, with no offset
    where a channel is uniform; (B, C) bool, the uniform tiles' channels, or None where there
    are none)."""
    uniform = offsets == UNIFORM_TILE
    shifts = scale_offset(torch.where(uniform, SCALE_OFFSET_ZERO, offsets))
    return shifts, (uniform if bool(uniform.any()) else None)


def choose_uniform_tiles(params: torch.Tensor, tiles: torch.Tensor, inside: torch.Tensor,
                         offsets: torch.Tensor, chunk: int = DEFAULT_GROUP) -> torch.Tensor:
    """``offsets`` (N, C) with UNIFORM_TILE for every channel of each tile that the model, at
    those offsets, would code in more bits (float NLL, :func:`head.tile_bits`) than uniform
    tables over the levels each channel uses (log2 of their count a sub-pixel: 8 for all 256,
    a little more where :func:`choose_level_sets` then finds the set not worth writing): white
    noise, where a model trained on photos is sure of the wrong thing.  Format 12 on."""
    per_pixel = uniform_pixel_bits(tiles, inside)
    bits = torch.cat([tile_bits(params[s:s + chunk].to(torch.float32) / fp.ONE, tiles[s:s + chunk],
                                inside[s:s + chunk], offsets[s:s + chunk]) for s in range(0, len(tiles), chunk)])
    flat = inside.flatten(1).sum(1).to(bits.dtype) * per_pixel
    out = offsets.clone()
    out[bits > flat] = UNIFORM_TILE
    return out


def _encode_group(model: zoo.ExactModel, tiles: torch.Tensor, inside: torch.Tensor,
                  params: torch.Tensor, stats: EncodeStats, offsets: torch.Tensor | None,
                  levels: list[int | None]) -> bytes:
    """Code one lock-step group: tiles (B, C, h, w), inside (B, 1, h, w), params (B, P, h, w).

    The segment starts with each tile's scale-offset indices (B, C) ``offsets``
    (:func:`_tile_offsets`, :func:`choose_uniform_tiles`); none are written when they are None
    (format versions before container.ADAPTIVE_SCALES_VERSION).  ``levels``: the plane group's
    level sets (header).
    """
    b, c, h, w = tiles.shape
    head = ExactHead(model.ops.tables, c, model.config.mixtures, levels)
    # rows in decoding order: position-major, tile-minor
    p = params.permute(2, 3, 0, 1).reshape(h * w * b, -1)
    sym = tiles.permute(2, 3, 0, 1).reshape(h * w * b, c).to(torch.int64)
    ins = inside.permute(2, 3, 0, 1).reshape(h * w * b).bool()
    enc = Encoder()
    shifts, uniform = None, None
    if offsets is not None:
        enc.encode(offsets.flatten(), _offset_tables(b * c, container.FORMAT_VERSION))
        shifts, uniform = _uniform_tiles(offsets)
    per = max(b, (HEAD_CHUNK_ROWS // b) * b)
    for s in range(0, h * w * b, per):
        e = min(s + per, h * w * b)
        reps = (e - s) // b
        head.start(p[s:e], None if shifts is None else shifts.repeat(reps, 1),
                   None if uniform is None else uniform.repeat(reps, 1))
        freqs = []
        for ch in range(c):
            freqs.append(head.freqs(ch))
            head.observe(ch, sym[s:e, ch])
        f = torch.stack(freqs, 1).reshape(-1, b, c, 256).transpose(1, 2)  # (pos, C, B, 256)
        x = sym[s:e].reshape(-1, b, c).transpose(1, 2)  # (pos, C, B)
        m = ins[s:e].reshape(-1, 1, b).expand(-1, c, b)
        f, x = f[m], x[m]
        stats.nll_bits += float(exact_bits(f, x).sum())
        enc.encode(x, f)
    return enc.finish(trimmed=container.FORMAT_VERSION >= container.COMPACT_VERSION)


def _tile_offsets(params: torch.Tensor, tiles: torch.Tensor, inside: torch.Tensor,
                  adapt: bool | None, chunk: int = DEFAULT_GROUP) -> torch.Tensor | None:
    """The scale-offset indices (N, C) of tiles (N, C, h, w) under exact params (N, P, h, w):
    each tile's and channel's best (:func:`head.choose_scale_offsets`, ``chunk`` tiles at a time)
    when ``adapt``; all "no offset" when it is False; None (nothing written) when it is None."""
    if adapt is None:
        return None
    if not adapt:
        return torch.full(tiles.shape[:2], SCALE_OFFSET_ZERO, dtype=torch.int64)
    return torch.cat([choose_scale_offsets(params[s:s + chunk].to(torch.float32) / fp.ONE, tiles[s:s + chunk],
                                           inside[s:s + chunk]) for s in range(0, len(tiles), chunk)])


def _level_savings(model: zoo.ExactModel, sym: torch.Tensor, params: torch.Tensor, pick: torch.Tensor,
                   hw: tuple[int, int], shifts: torch.Tensor | None, used: list[int]) -> torch.Tensor:
    """(C, len(pick)) float64: the bits each picked pixel (an index into the plane group's
    pixels, tile-major) saves in each channel when that channel's tables are restricted to
    ``used``, by the exact head, in chunks of ``HEAD_CHUNK_ROWS`` pixels."""
    h, w = hw
    c = sym.shape[1]
    head = ExactHead(model.ops.tables, c, model.config.mixtures)
    masks = [level_mask(m) for m in used]
    saved = torch.zeros(c, len(pick), dtype=torch.float64)
    for s in range(0, len(pick), HEAD_CHUNK_ROWS):
        part = pick[s:s + HEAD_CHUNK_ROWS]
        tile, pos = part // (h * w), part % (h * w)
        head.start(params[tile, :, pos // w, pos % w], None if shifts is None else shifts[tile])
        for ch in range(c):
            x = sym[part, ch]
            mass = head.masses(ch)  # the restricted table is built from the same masses, as ExactHead's
            saved[ch, s:s + len(part)] = (exact_bits(freqs_from_masses(mass), x)
                                          - exact_bits(freqs_from_masses(mass * masks[ch]), x))
            head.observe(ch, x)
    return saved


def _uniform_saving(used: int) -> float:
    """The bits a level set ``used`` (non-empty) saves on each symbol of a channel coded with a
    uniform table (UNIFORM_TILE): the same for every symbol in the set."""
    x = torch.tensor([(used & -used).bit_length() - 1])  # its lowest level
    return float(exact_bits(uniform_freqs(None), x) - exact_bits(uniform_freqs(used), x))


def choose_level_sets(model: zoo.ExactModel, tiles: torch.Tensor, inside: torch.Tensor,
                      params: torch.Tensor, offsets: torch.Tensor | None,
                      sample: int = LEVEL_SAMPLE_PIXELS) -> list[int | None]:
    """The level sets worth writing for tiles (N, C, h, w) coded with exact params (N, P, h, w).

    For each channel that does not use all 256 levels, the bits that restricting its tables to
    the levels it uses would save are measured with the exact head, first on up to ``sample``
    of the pixels (drawn at random with a fixed seed, scaled to the whole plane group).  The
    set is kept (a 256-bit mask) where that saves more than its header field costs, else None.
    Where the estimate lies within ``LEVEL_SAMPLE_Z`` standard errors of the field's cost and
    those standard errors exceed ``LEVEL_SAMPLE_TOLERANCE_BITS``, the choice is not trusted to
    the sample: it is measured again on ``LEVEL_SAMPLE_GROWTH`` times as many pixels, up to
    every pixel, where the saving is exact.  In a tile's channel coded uniformly
    (``offsets`` UNIFORM_TILE, format 12) the saving is the uniform tables' own.  Returns []
    when no channel gains: the header then carries no level sets.
    """
    n, c, h, w = tiles.shape
    sym = tiles.permute(0, 2, 3, 1).reshape(-1, c).to(torch.int64)
    rows = torch.nonzero(inside.reshape(-1)).flatten()
    used = [levels_used(sym[rows, ch]) for ch in range(c)]
    open_ = {ch for ch in range(c) if used[ch] != ALL_LEVELS}
    if not open_:
        return []
    shifts, uniform = (None, None) if offsets is None else _uniform_tiles(offsets)
    total = len(rows)
    # a fixed pseudo-random order (the same bytes on every run): a strided sample would line up
    # with the tiles' columns and over-weigh their borders, where the tables are widest
    order = rows[torch.randperm(total, generator=torch.Generator().manual_seed(0))]
    size = min(total, sample)
    chosen: list[int | None] = [None] * c
    while open_:
        pick = order[:size].sort().values  # nested samples: each stage's contains the last's
        saved = _level_savings(model, sym, params, pick, (h, w), shifts, used)
        if uniform is not None:
            in_uniform = uniform[pick // (h * w)]  # (len(pick), C)
            for ch in open_:
                saved[ch, in_uniform[:, ch]] = _uniform_saving(used[ch])
        for ch in sorted(open_):
            estimate = float(saved[ch].mean()) * total
            cost = 8 * (len(container.pack_level_sets([used[ch]], 1)) - 1)
            if size < total:  # standard error of the scaled sum, with the finite-population correction
                spread = float(saved[ch].std()) if size > 1 else float("inf")
                error = total * spread / size ** 0.5 * (1 - size / total) ** 0.5
                margin = LEVEL_SAMPLE_Z * error
                if abs(estimate - cost) <= margin and margin > LEVEL_SAMPLE_TOLERANCE_BITS:
                    continue  # too close to call from this sample, and a wrong call could cost more
            chosen[ch] = used[ch] if estimate > cost else None
            open_.discard(ch)
        size = min(total, size * LEVEL_SAMPLE_GROWTH)
    return chosen if any(m is not None for m in chosen) else []


def estimated_bits(params: torch.Tensor, tiles: torch.Tensor, inside: torch.Tensor,
                   adapt: bool | None, chunk: int = DEFAULT_GROUP, offsets: torch.Tensor | None = None) -> float:
    """Float NLL (bits) of tiles (N, C, h, w) under exact params (N, P, h, w) with the scale
    offsets the encoder would choose (or ``offsets`` (N, C), if given): what the payload will
    cost, to within about 1 %."""
    if offsets is None:
        offsets = _tile_offsets(params, tiles, inside, bool(adapt), chunk)  # no offsets: zeros
    total = 0.0
    for s in range(0, len(tiles), chunk):
        p = params[s:s + chunk].to(torch.float32) / fp.ONE
        total += float(tile_bits(p, tiles[s:s + chunk], inside[s:s + chunk], offsets[s:s + chunk]).sum())
    return total


def _pick_model(candidates: list[zoo.ExactModel], tiles: torch.Tensor, inside: torch.Tensor,
                device: torch.device, bar, adapt: bool | None
                ) -> tuple[zoo.ExactModel, torch.Tensor, torch.Tensor | None]:
    """The candidate whose exact parameters give the fewest estimated bits, with those parameters
    and its tiles' scale offsets (each candidate costs one exact forward pass and one choice of
    offsets; one candidate costs nothing more than encoding does anyway)."""
    best = None
    for model in candidates:
        params = exact_params(model, tiles, inside, device, bar)
        offsets = _tile_offsets(params, tiles, inside, adapt)
        if len(candidates) == 1:
            return model, params, offsets
        bits = estimated_bits(params, tiles, inside, adapt, offsets=offsets)
        if best is None or bits < best[0]:
            best = (bits, model, params, offsets)
    return best[1:]


def _candidates(chosen, channels: int) -> list[zoo.ExactModel]:
    """``model_for``'s answer (one model or a list to pick from), checked against the channels."""
    models = list(chosen) if isinstance(chosen, (list, tuple)) else [chosen]
    if not models:
        raise ValueError(f"no model codes {channels} channel(s)")
    for model in models:
        if model.config.channels != channels:
            raise ValueError(f"model {model.name} codes {model.config.channels} channel(s), "
                             f"this plane group has {channels}")
    return models


def encode_image(img: ImageData, model_for=None, tile: int = DEFAULT_TILE, group: int | None = None,
                 device: str = "cpu", progress: bool | None = None,
                 adapt: bool = True, level_sets: bool = True, uniform_tiles: bool = True,
                 calibrate: bool = True) -> tuple[bytes, EncodeStats]:
    """Encode an image; ``model_for(channels)`` gives the model of each plane group, or a list of
    models to pick from (the one with the fewest estimated bits: ``--model best``);
    ``adapt``: choose each tile's and channel's scale offset (else the model's own scales are used);
    ``level_sets``: restrict a channel's tables to the levels it uses where that saves bits
    (:func:`choose_level_sets`); ``uniform_tiles``: code a tile's channels uniformly where the
    model would take more bits (:func:`choose_uniform_tiles`; format 12); ``calibrate``: fit a
    gain and an offset to each model output of a plane group where that pays
    (:func:`calibration.fit`; format 13)."""
    model_for = model_for or (lambda ch: zoo.resolve(zoo.DEFAULTS[ch]))
    dev = _device(device)
    h, w, _ = img.pixels.shape
    coded = to_coded(img)
    if group is None:
        group = default_group(TilePlan(h, w, tile, 1).count)
    plan = TilePlan(h, w, tile, group)
    stats = EncodeStats()
    if container.FORMAT_VERSION < container.ADAPTIVE_SCALES_VERSION:
        adapt = None  # an older format, written by tests of the reader's compatibility
    planes = []
    groups = coded_planes(img.mode, img.meta)
    candidates = [_candidates(model_for(nch), nch) for _, nch in groups]
    bar = _progress(h * w * sum(map(len, candidates)), "encoding", progress)
    for (chans, nch), models in zip(groups, candidates):
        plane = torch.from_numpy(np.ascontiguousarray(coded[:, :, chans].transpose(2, 0, 1)))
        tiles, inside = plan.split(plane)
        model, params, offsets = _pick_model(models, tiles, inside, dev, bar, adapt)
        stats.models.append(model.name)
        cal = None
        if calibrate and container.FORMAT_VERSION >= container.CALIBRATION_VERSION:
            cal = calibration.fit(params, tiles, inside, None if offsets is None else scale_offset(offsets))
            if cal is not None:  # calibrated parameters, and the scale offsets that suit them
                params = calibration.apply(params, cal, dim=1)
                offsets = _tile_offsets(params, tiles, inside, adapt)
                stats.calibrated_planes += 1
        levels = []
        if uniform_tiles and offsets is not None and container.FORMAT_VERSION >= container.UNIFORM_TILES_VERSION:
            offsets = choose_uniform_tiles(params, tiles, inside, offsets)
            stats.uniform_channels += int((offsets == UNIFORM_TILE).sum())
        if level_sets and container.FORMAT_VERSION >= container.LEVEL_SETS_VERSION:
            levels = choose_level_sets(model, tiles, inside, params, offsets)
        segs = [_encode_group(model, tiles[g], inside[g], params[g], stats,
                              None if offsets is None else offsets[g], levels)
                for g in (slice(r.start, r.stop) for r in plan.groups())]
        unnamed = container.FORMAT_VERSION >= container.UNNAMED_SHIPPED_VERSION and zoo.is_shipped(model)
        planes.append(container.PlaneGroup(nch, "" if unnamed else model.name, model.digest, segs, levels,
                                           None if cal is None else (cal.gains, cal.offsets)))
        stats.payload_bytes += sum(map(len, segs))
    bar.close()
    header = container.Header(fp.SCHEME_VERSION, h, w, img.mode, plan.tile, plan.group,
                              zlib.crc32(img.pixels.tobytes()), img.meta, planes)
    return container.pack(header), stats


class _single_thread:
    """Run torch single-threaded: the per-pixel loop is hundreds of tiny ops, where intra-op
    threads only add synchronisation (37x slower measured with both cores busy)."""

    def __enter__(self):
        self.n = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.n)


def _decode_group(model: zoo.ExactModel, payload: bytes, inside: torch.Tensor, bar=None,
                  version: int = container.FORMAT_VERSION, levels: list[int | None] | None = None,
                  cal: calibration.Calibration | None = None) -> torch.Tensor:
    """Decode one lock-step group: inside (B, 1, h, w) -> tiles (B, C, h, w) uint8; ``version``:
    the file's format version (from 3 the segment starts with scale offsets, from 5 its stream is
    trimmed); ``levels``: the plane group's level sets from the header (version 8); ``cal``: its
    calibration (version 13)."""
    with _single_thread():
        return _decode_group_loop(model, payload, inside, bar, version, levels, cal)


def _decode_group_loop(model: zoo.ExactModel, payload: bytes, inside: torch.Tensor, bar,
                       version: int, levels: list[int | None] | None,
                       cal: calibration.Calibration | None) -> torch.Tensor:
    b, _, h, w = inside.shape
    c = model.config.channels
    ops = model.ops
    dec = Decoder(payload, trimmed=version >= container.COMPACT_VERSION)
    adapted = version >= container.ADAPTIVE_SCALES_VERSION
    shifts, uniform = None, None
    if adapted:
        shifts, uniform = _uniform_tiles(dec.decode(_offset_tables(b * c, version)).view(b, c))
    cache = model.net.CachedDecoder(ops, b, h, w)
    head = ExactHead(ops.tables, c, model.config.mixtures, levels)
    out = torch.zeros(b, c, h, w, dtype=torch.int64)
    ins_bool = inside[:, 0].bool()
    for i in range(h):
        cache.start_row(i)
        for j in range(w):
            head.start(calibration.apply(cache.step(j), cal), shifts, uniform)
            m = ins_bool[:, i, j]
            for ch in range(c):
                f = head.freqs(ch)
                sym = torch.zeros(b, dtype=torch.int64)
                sym[m] = dec.decode(f[m])
                head.observe(ch, sym)
                out[:, ch, i, j] = sym
            cache.commit(j, ops.embed(out[:, :, i:i + 1, j:j + 1], inside[:, :, i:i + 1, j:j + 1])[:, :, 0, 0])
        if bar is not None:
            bar.update(int(inside[:, :, i].sum()))
    return out.to(torch.uint8)


def decode_image(data: bytes, model_for=None, progress: bool | None = None,
                 workers: int | None = None) -> ImageData:
    """Decode .arc bytes; ``model_for(name, digest) -> ExactModel`` finds each plane group's model.

    Payload segments are independent: ``workers`` processes (default: one per CPU core, for
    images of PARALLEL_MIN_PIXELS or more) decode them in parallel.
    """
    header = container.unpack(data)
    if header.scheme != fp.SCHEME_VERSION:
        raise container.FormatError(f"exact scheme version {header.scheme} is not supported "
                                    f"(this arcompress uses {fp.SCHEME_VERSION})")
    groups = coded_planes(header.mode, header.meta)
    coded = np.zeros((header.height, header.width, sum(len(c) for c, _ in groups)), np.uint8)
    if [len(c) for c, _ in groups] != [p.channels for p in header.planes]:
        raise container.FormatError("corrupt header (plane groups do not match the image mode)")
    plan = TilePlan(header.height, header.width, header.tile, header.group)
    if any(len(p.segments) != len(plan.groups()) for p in header.planes):
        raise container.FormatError("corrupt header (segment count does not match the tiling)")
    models = [(model_for or default_model_for)(p.model_name, p.model_digest) for p in header.planes]
    for model, p in zip(models, header.planes):
        if model.config.channels != p.channels:
            raise container.FormatError("corrupt header (model channels)")
    cals = [_calibration(model, p) for model, p in zip(models, header.planes)]
    inside = plan.inside()
    jobs = [(model, seg, inside[r.start:r.stop], header.version, p.levels, cal)
            for model, p, cal in zip(models, header.planes, cals) for r, seg in zip(plan.groups(), p.segments)]
    bar = _progress(header.height * header.width * len(groups), "decoding", progress)
    if workers is None:
        big = header.height * header.width >= PARALLEL_MIN_PIXELS
        workers = min(len(jobs), os.cpu_count() or 1) if big else 1
    decoded = _decode_jobs(jobs, workers, bar)
    bar.close()
    n_seg = len(plan.groups())
    for k, (chans, _) in enumerate(groups):
        tiles = torch.cat(decoded[k * n_seg:(k + 1) * n_seg])
        coded[:, :, chans] = plan.join(tiles).permute(1, 2, 0).numpy()
    img = ImageData(from_coded(header.mode, header.meta, coded), header.mode, header.meta)
    if zlib.crc32(img.pixels.tobytes()) != header.crc32:
        raise DecodeError("decoded pixels fail the CRC check: the file is corrupt "
                          "(or was written with a model whose weights differ)")
    return img


def _calibration(model: zoo.ExactModel, plane: container.PlaneGroup) -> calibration.Calibration | None:
    """A plane group's calibration from its header field, checked against its model."""
    if plane.calibration is None:
        return None
    gains, offsets = plane.calibration
    size = num_params(model.config.channels, model.config.mixtures)
    try:
        if len(gains) != size:
            raise ValueError
        return calibration.Calibration(gains, offsets)
    except ValueError:
        raise container.FormatError("corrupt header (calibration)") from None


_JOBS: list = []


def _decode_job(k: int):
    model, seg, inside, version, levels, cal = _JOBS[k]
    return _decode_group(model, seg, inside, version=version, levels=levels, cal=cal).numpy()


def _decode_jobs(jobs: list, workers: int, bar) -> list[torch.Tensor]:
    """Decode (model, payload, inside, version, levels, calibration) jobs, in forked worker
    processes when workers > 1."""
    if workers <= 1 or len(jobs) <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [_decode_group(m, seg, ins, bar, version, levels, cal) for m, seg, ins, version, levels, cal in jobs]
    global _JOBS
    _JOBS = jobs  # inherited by the forked workers: nothing large is pickled
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            out = []
            for (_, _, inside, _, _, _), tiles in zip(jobs, pool.map(_decode_job, range(len(jobs)))):
                out.append(torch.from_numpy(tiles))
                if bar is not None:
                    bar.update(int(inside.sum()))
            return out
    finally:
        _JOBS = []


def default_model_for(name: str, digest: bytes) -> zoo.ExactModel:
    """The shipped model with this name (or, for an unnamed one, this SHA-256), checked against
    the file's SHA-256."""
    if not name:
        model = zoo.shipped_by_digest(digest)
        if model is None:
            raise zoo.ModelError(f"the file was written with a shipped model (SHA-256 {digest.hex()[:16]}...) "
                                 "that this version of arcompress does not have; pass its model file "
                                 "with --model")
        return model
    try:
        model = zoo.resolve(name)
    except zoo.ModelError:
        raise zoo.ModelError(f"the file was written with model {name!r}, which is not available here; "
                             "pass its model file with --model") from None
    if not model.matches(digest):
        raise zoo.ModelError(f"the file was written with a model named {name!r} whose weights "
                             f"(SHA-256 {digest.hex()[:16]}...) differ from this one's "
                             f"({model.digest.hex()[:16]}...)")
    return model

