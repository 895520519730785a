"""Image benchmark: bits written vs exact NLL vs float NLL vs classical codecs, and speed.

Every number comes from running this file; results go to ``benchmarks/results/*.json`` with
the machine, library versions, command and date, and a markdown summary to
``benchmarks/results/images.md`` (included in README.md).
"""

from __future__ import annotations

import io
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import arcompress
from arcompress import codec, container, zoo
from arcompress.head import SCALE_OFFSET_ZERO, choose_scale_offsets, tile_bits
from arcompress.media import ImageData, coded_planes
from arcompress.pixelcnn import CachedDecoder, forward
from arcompress.plan import TilePlan

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "images" / "dev"
RESULTS = Path(__file__).resolve().parent / "results"


# ----------------------------------------------------------------------------- classical codecs

#: the classical codecs, at their strongest common settings, in table order
CODECS = ["PNG", "WebP-lossless-m6", "JPEG-2000", "JPEG-LS", "JPEG-XL-e7", "JPEG-XL-e9"]


def classical_sizes(a: np.ndarray, only: list[str] | None = None) -> dict[str, int | None]:
    """Compressed bytes of (H, W, C) uint8 pixels with each classical codec (None: codec failed),
    each checked lossless by decoding.  ``only``: measure just these codecs."""
    import imagecodecs

    img = a[:, :, 0] if a.shape[2] == 1 else a
    rgb = np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a  # libwebp codes grey as RGB

    def png() -> bytes:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "PNG", optimize=True, compress_level=9)
        return buf.getvalue()

    trials = {  # name -> (encode, decode, the pixels it must give back)
        "PNG": (png, lambda d: np.asarray(Image.open(io.BytesIO(d))), img),
        "WebP-lossless-m6": (lambda: imagecodecs.webp_encode(rgb, level=100, lossless=True, method=6, numthreads=1),
                             imagecodecs.webp_decode, rgb),
        # raw codestream (no JP2 boxes), reversible 5/3 wavelet and colour transform
        "JPEG-2000": (lambda: imagecodecs.jpeg2k_encode(img, level=0, reversible=True, codecformat="j2k", numthreads=1),
                      imagecodecs.jpeg2k_decode, img),
        "JPEG-LS": (lambda: imagecodecs.jpegls_encode(img), imagecodecs.jpegls_decode, img),
        "JPEG-XL-e7": (lambda: imagecodecs.jpegxl_encode(img, lossless=True, effort=7, numthreads=1),
                       imagecodecs.jpegxl_decode, img),
        "JPEG-XL-e9": (lambda: imagecodecs.jpegxl_encode(img, lossless=True, effort=9, numthreads=1),
                       imagecodecs.jpegxl_decode, img),
    }
    out: dict[str, int | None] = {}
    for name in only or CODECS:
        enc, dec, want = trials[name]
        try:
            data = enc()
        except Exception:  # noqa: BLE001 - a codec that cannot code this input is reported as None
            out[name] = None
            continue
        if not np.array_equal(np.asarray(dec(data)).reshape(-1), want.reshape(-1)):
            raise RuntimeError(f"{name} was not lossless")
        out[name] = len(data)
    return out


#: short column names
SHORT = {"PNG": "PNG", "WebP-lossless-m6": "WebP", "JPEG-2000": "J2K", "JPEG-LS": "JPEG-LS",
         "JPEG-XL-e7": "JXL e7", "JPEG-XL-e9": "JXL e9"}


# ----------------------------------------------------------------------------- arcompress

def float_tile_bits(params: torch.Tensor, tiles: torch.Tensor, inside: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float NLL in bits of each tile (B,): with the model's own scales, and with the scale
    offsets the encoder would pick from these float parameters (head.choose_scale_offsets)."""
    own = torch.full(tiles.shape[:2], SCALE_OFFSET_ZERO)
    return (tile_bits(params, tiles, inside, own),
            tile_bits(params, tiles, inside, choose_scale_offsets(params, tiles, inside)))


def float_nll_bits(img: ImageData, tile: int, model_for=None) -> tuple[float, float]:
    """Total float-model NLL (bits) of an image on the same tiles the codec uses, with the model's
    own scales and with adapted ones (:func:`float_tile_bits`); ``model_for(channels)``: the exact
    model per plane group (default: the shipped defaults)."""
    h, w, _ = img.pixels.shape
    plan = TilePlan(h, w, tile, codec.DEFAULT_GROUP)
    own = adapted = 0.0
    coded = arcompress.media.to_coded(img)
    for chans, nch in arcompress.media.coded_planes(img.mode, img.meta):
        model = (model_for or (lambda c: zoo.resolve(zoo.DEFAULTS[c])))(nch).float_model()
        plane = torch.from_numpy(np.ascontiguousarray(coded[:, :, chans].transpose(2, 0, 1)))
        tiles, inside = plan.split(plane)
        with torch.no_grad():
            for s in range(0, len(tiles), 64):
                t, m = tiles[s:s + 64], inside[s:s + 64]
                a, b = float_tile_bits(model(t, m), t, m)
                own, adapted = own + float(a.sum()), adapted + float(b.sum())
    return own, adapted


def level_set_counts(data: bytes) -> list[int | None]:
    """Per coded channel of the .arc file ``data``, the number of levels its level set admits
    (None: no set), as ``arcompress info`` reports them."""
    return [n for m in arcompress.api.info(data)["models"] for n in m["level_sets"] or []]


def add_level_set_fields(row: dict, img: ImageData, data: bytes, tile: int = codec.DEFAULT_TILE) -> None:
    """Add to an arcompress row what the level sets (format 8) and calibrations (format 13) of its
    file ``data`` hold and save: per channel the number of levels each set admits (None: no set);
    where a plane group is calibrated, the bits per sub-pixel written and the exact NLL of the
    same encode without calibrations (``*_without_calibration``); where there are sets, those of
    an encode with neither (``*_plain``); and the conversion's cost, which compares like with like
    (the float NLL knows neither)."""
    sets = level_set_counts(data)
    row["level_sets"] = sets
    n = img.pixels.size
    if row.get("calibrated_planes"):
        other, stats = codec.encode_image(img, tile=tile, progress=False, calibrate=False)
        row["bpsp_written_without_calibration"] = 8 * len(other) / n
        row["bpsp_exact_nll_without_calibration"] = stats.nll_bits / n
    if any(k is not None for k in sets):
        plain, stats = codec.encode_image(img, tile=tile, progress=False, level_sets=False, calibrate=False)
        row["bpsp_written_plain"] = 8 * len(plain) / n
        row["bpsp_exact_nll_plain"] = stats.nll_bits / n
    plain_nll = row.get("bpsp_exact_nll_plain", row.get("bpsp_exact_nll_without_calibration", row["bpsp_exact_nll"]))
    row["conversion_cost_pct"] = 100 * (plain_nll / row["bpsp_float_nll_adapted"] - 1)


def arcompress_row(img: ImageData, decode: bool, tile: int = codec.DEFAULT_TILE) -> tuple[dict, bytes]:
    """Encode in-process (sizes, NLLs, encode speed) and optionally decode in-process (speed)."""
    t0 = time.perf_counter()
    data, stats = codec.encode_image(img, tile=tile, progress=False)
    t_enc = time.perf_counter() - t0
    n = img.pixels.size
    own, adapted = float_nll_bits(img, tile)
    row = {"bytes": len(data), "header_bytes": len(data) - stats.payload_bytes, "format_version": data[4],
           "models": stats.models, "uniform_tile_channels": stats.uniform_channels,
           "calibrated_planes": stats.calibrated_planes,
           "bpsp_written": 8 * len(data) / n, "bpsp_exact_nll": stats.nll_bits / n,
           "bpsp_float_nll": own / n, "bpsp_float_nll_adapted": adapted / n, "encode_s": t_enc,
           "encode_px_per_s": img.pixels.shape[0] * img.pixels.shape[1] / t_enc}
    row["overhead_pct"] = 100 * (row["bpsp_written"] / row["bpsp_exact_nll"] - 1)
    add_level_set_fields(row, img, data, tile)
    if decode:
        t0 = time.perf_counter()
        back = codec.decode_image(data, progress=False)
        row["decode_s"] = time.perf_counter() - t0
        row["decode_px_per_s"] = img.pixels.shape[0] * img.pixels.shape[1] / row["decode_s"]
        if not np.array_equal(back.pixels, img.pixels):
            raise RuntimeError("round trip failed")
        row["round_trip_exact"] = True
    return row, data


def cli_round_trip(img: ImageData, expected: bytes, workdir: Path) -> dict:
    """``arcompress encode`` then ``arcompress decode`` as a user runs them; compare bit for bit."""
    src, arc, out = workdir / "in.png", workdir / "in.png.arc", workdir / "out.png"
    for f in (src, arc, out):
        f.unlink(missing_ok=True)
    arcompress.media.write_image(src, img)
    t_enc, mem_enc = run_cli(["encode", str(src), "-q"])
    t_dec, mem_dec = run_cli(["decode", str(arc), "-o", str(out), "-q"])
    with Image.open(out) as im:
        same = bool(np.array_equal(np.asarray(im).reshape(img.pixels.shape), img.pixels))
    if not same or arc.read_bytes() != expected:
        raise RuntimeError("CLI round trip differs")
    return {"cli_round_trip_exact": True, "cli_bytes_equal_api": True,
            "cli_encode_s": t_enc, "cli_decode_s": t_dec,
            "cli_encode_peak_mb": mem_enc, "cli_decode_peak_mb": mem_dec}


#: runs the CLI, then reports the process's own peak resident memory (VmHWM: it belongs to the
#: address space made by exec, so unlike ru_maxrss it does not inherit this parent's peak)
_CLI_WRAPPER = """import runpy, sys
sys.argv = ["arcompress"] + sys.argv[1:]
try:
    runpy.run_module("arcompress", run_name="__main__")
finally:
    kb = next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM"))
    sys.stderr.write(f"ARCOMPRESS_PEAK_KB {kb}\\n")
"""


def run_cli(args: list[str]) -> tuple[float, float]:
    """Run ``python -m arcompress ARGS`` in a new process: (seconds, its peak resident memory in
    MB; decoding workers forked for large images are not counted)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CLI_WRAPPER, *args], stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"arcompress {' '.join(args)} failed (exit {proc.returncode}): {proc.stderr[-500:]}")
    kb = [l.split()[1] for l in proc.stderr.splitlines() if l.startswith("ARCOMPRESS_PEAK_KB")]
    return seconds, int(kb[-1]) / 1024


# ----------------------------------------------------------------------------- data

def load(path: Path, crop: int | None) -> ImageData:
    """Dev image as ImageData, optionally its central crop x crop square."""
    with Image.open(path) as im:
        a = np.asarray(im)
        mode = im.mode
    if crop and min(a.shape[:2]) > crop:
        y, x = (a.shape[0] - crop) // 2, (a.shape[1] - crop) // 2
        a = a[y:y + crop, x:x + crop]
    return arcompress.media.from_array(np.ascontiguousarray(a), mode if mode in ("L", "RGB") else None)


def dev_sets(quick: bool) -> dict[str, list[tuple[Path, int | None]]]:
    sipi = sorted((DATA / "usc-sipi-color").glob("*.png"))
    ici = sorted((DATA / "imagecompression-info").glob("*.png"))
    if quick:
        return {"usc-sipi-color (128x128 central crops)": [(p, 128) for p in sipi[:3]],
                "imagecompression-info (128x128 central crops)": [(p, 128) for p in ici[:3]]}
    return {"usc-sipi-color (whole images)": [(p, None) for p in sipi],
            "imagecompression-info (512x512 central crops)": [(p, 512) for p in ici]}


# ----------------------------------------------------------------------------- speed

def cached_vs_naive(size: int = 32) -> dict:
    """Decoder network cost on one size x size tile: cached steps vs a full forward per pixel."""
    model = zoo.resolve(zoo.DEFAULTS[3])
    ops = model.ops
    x = torch.from_numpy(load(sorted((DATA / "usc-sipi-color").glob("*.png"))[0], size).pixels
                         .transpose(2, 0, 1).copy())[None]
    inside = torch.ones(1, 1, size, size)
    emb = ops.embed(x, inside)
    with codec._single_thread():
        t0 = time.perf_counter()
        dec = CachedDecoder(ops, 1, size, size)
        cached = torch.zeros(1, ops.weights["out"][0].shape[0], size, size, dtype=torch.float64)
        for i in range(size):
            dec.start_row(i)
            for j in range(size):
                cached[:, :, i, j] = dec.step(j)
                dec.commit(j, emb[:, :, i, j])
        t_cached = time.perf_counter() - t0
        t0 = time.perf_counter()
        partial = torch.zeros_like(emb)
        naive = torch.zeros_like(cached)
        for i in range(size):
            for j in range(size):
                naive[:, :, i, j] = forward(ops, partial)[:, :, i, j]
                partial[:, :, i, j] = emb[:, :, i, j]
        t_naive = time.perf_counter() - t0
    assert torch.equal(cached, naive)
    return {"tile": size, "cached_s": t_cached, "naive_s": t_naive, "speedup": t_naive / t_cached,
            "identical_params": True}


def tiling_tradeoff(images: list[ImageData], tiles=(16, 32, 64)) -> list[dict]:
    """Bits (encode only) and decode speed per tile size."""
    rows = []
    for t in tiles:
        bits = n = 0
        for img in images:
            data, _ = codec.encode_image(img, tile=t, progress=False)
            bits += 8 * len(data)
            n += img.pixels.size
        probe = images[0]
        data, stats = codec.encode_image(probe, tile=t, progress=False)
        t0 = time.perf_counter()
        codec.decode_image(data, progress=False)
        dt = time.perf_counter() - t0
        rows.append({"tile": t, "bpsp_written": bits / n, "decode_px_per_s": probe.pixels.shape[0] * probe.pixels.shape[1] / dt,
                     "probe": f"{probe.pixels.shape[1]}x{probe.pixels.shape[0]}", "format_version": data[4],
                     "models": stats.models})
    return rows


# ----------------------------------------------------------------------------- driver

def start_results(quick: bool, command: str, partial: Path | None, log=print, **fields) -> dict:
    """A fresh results dict (command, date, machine, quick, ``fields``), or the saved ``partial``
    one when its models are still shipped unchanged (models added since do not matter) and
    ``quick`` is the same: a rerun resumes."""
    results = {"command": command, "date": today(), "machine": machine(), "quick": quick, **fields}
    if partial is not None and partial.exists():
        old = json.loads(partial.read_text())
        now = results["machine"]["models"]
        same = all(now.get(k) == v for k, v in old.get("machine", {}).get("models", {}).items())
        if same and old.get("quick") == quick:
            log(f"resuming from {partial}")
            return old
    return results


def today() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def machine() -> dict:
    import importlib.metadata
    import imagecodecs
    import PIL
    cpu = platform.processor()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": torch.get_num_threads(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__, "constriction": importlib.metadata.version("constriction"),
            "imagecodecs": imagecodecs.__version__, "pillow": PIL.__version__, "arcompress": arcompress.__version__,
            "models": {n: zoo.resolve(n).digest.hex() for n in zoo.SHIPPED}}


def _outdated(row: dict) -> bool:
    """Whether an arcompress measurement was taken with an older .arc image layout (versions
    after container.IMAGE_LAYOUT_VERSION write images byte for byte as it does)."""
    return row.get("format_version", 1) < container.IMAGE_LAYOUT_VERSION


def _rgb_stale(row: dict) -> bool:
    """Whether a speed or tiling measurement (RGB images) is outdated or was taken with another
    RGB model than today's default (or does not say which)."""
    return _outdated(row) or row.get("models") != [zoo.DEFAULTS[3]]


def _without(row: dict, what: str) -> str:
    """The bits per sub-pixel the file would take without calibrations (``what``
    "without_calibration") or without them and level sets ("plain"), or "=" where the encoder
    wrote neither."""
    value = row.get(f"bpsp_written_{what}")
    if value is None and what == "plain":
        value = row.get("bpsp_written_without_calibration")
    return "=" if value is None else f"{value:.3f}"


def _saving_line(what: str, without: float, with_: float, png: float, verb: str) -> str:
    """A sentence: ``what`` the set would take ``without`` bits/sub-pixel (against PNG's ``png``),
    so the feature saves this much of it (``with_`` with it)."""
    return (f"{what} the set would be {without:.4f} bits/sub-pixel ({100 * (without / png - 1):+.1f} % vs PNG), "
            f"so {verb} {100 * (1 - with_ / without):.2f} % of it.")


def _not_default(row: dict, channels: int) -> bool:
    """Whether an arcompress measurement used other models than today's defaults (or did not say)."""
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
    return row.get("models") != [zoo.DEFAULTS[n] for _, n in coded_planes(mode, {})]


def run(quick: bool, command: str, partial: Path | None = None, log=print, recheck: bool = False) -> dict:
    """Measure everything; after each step the results so far are saved to ``partial`` (JSON),
    and a rerun with the same models resumes from it.  ``recheck`` (with saved results): encode
    every saved row's image again and measure again the rows the encoder now writes otherwise
    (another size or other level sets): for changes to the encoder's choices that keep the
    format."""
    results = start_results(quick, command, partial, log, sets={})
    if recheck:
        results.setdefault("recheck_started", today())  # kept while interrupted runs resume

    def save():
        if partial is not None:
            partial.write_text(json.dumps(results, indent=1))

    if "cached_vs_naive" not in results:
        log("speed: cached vs naive")
        results["cached_vs_naive"] = cached_vs_naive(16 if quick else 32)
        log(json.dumps(results["cached_vs_naive"]))
        save()
    if not quick and ("decode_speed" not in results or any(map(_rgb_stale, results["decode_speed"]))):
        speed = []
        for path, size in ((DATA / "usc-sipi-color" / "house.png", (256, 256)),
                           (DATA / "imagecompression-info" / "flower_foveon_rgb.png", (768, 512))):
            img = load(path, None)
            y, x = (img.pixels.shape[0] - size[1]) // 2, (img.pixels.shape[1] - size[0]) // 2
            img = arcompress.media.from_array(np.ascontiguousarray(img.pixels[y:y + size[1], x:x + size[0]]))
            if img.pixels.shape[:2] != (size[1], size[0]):
                raise RuntimeError(f"{path.name} is smaller than {size}")
            r, _ = arcompress_row(img, decode=True)
            speed.append({"image": path.name, "size": f"{size[0]}x{size[1]}", **r})
            log(f"decode speed {size}: {r['decode_px_per_s']:.0f} px/s, encode {r['encode_px_per_s']:.0f} px/s")
        results["decode_speed"] = speed
        save()
    if "tiling" not in results or any(map(_rgb_stale, results["tiling"])):
        probe_items = list(dev_sets(True).values())[0]
        probes = [load(p, 128 if quick else 256) for p, _ in probe_items[:2]]
        results["tiling"] = tiling_tradeoff(probes, (16, 32) if quick else (16, 32, 64))
        log(json.dumps(results["tiling"]))
        save()
    workdir = Path(tempfile.mkdtemp(prefix="arcompress-bench-"))
    for set_name, items in dev_sets(quick).items():
        rows = results["sets"].setdefault(set_name, [])
        done = {r["image"]: r for r in rows}
        for path, crop in items:
            if path.name in done:
                row = done[path.name]
                missing = [c for c in CODECS if c not in row["classical_bytes"]]
                if missing:  # a codec added since this row was measured
                    row["classical_bytes"].update(classical_sizes(load(path, crop).pixels, missing))
                    save()
                if _outdated(row["arcompress"]) or _not_default(row["arcompress"], row["channels"]):
                    # written in an older .arc format or by another default model: measure it again
                    img = load(path, crop)
                    row["arcompress"], data = arcompress_row(img, decode=False)
                    row["arcompress"].update(cli_round_trip(img, data, workdir))
                    save()
                    log(f"{set_name} {path.name}: remeasured, {row['arcompress']['bpsp_written']:.3f} bpsp written")
                elif recheck and row["arcompress"].get("encoder_checked", "") < results["recheck_started"]:
                    img = load(path, crop)
                    data, _ = codec.encode_image(img, progress=False)
                    if (len(data) != row["arcompress"]["bytes"]
                            or level_set_counts(data) != row["arcompress"].get("level_sets")):
                        before = row["arcompress"]["bpsp_written"]
                        row["arcompress"], data = arcompress_row(img, decode=False)
                        row["arcompress"].update(cli_round_trip(img, data, workdir))
                        log(f"{set_name} {path.name}: the encoder writes it otherwise now, remeasured: "
                            f"{before:.4f} -> {row['arcompress']['bpsp_written']:.4f} bpsp")
                    else:
                        log(f"{set_name} {path.name}: the encoder writes the same file")
                    row["arcompress"]["encoder_checked"] = today()
                    save()
                continue
            img = load(path, crop)
            row = {"image": path.name, "size": f"{img.pixels.shape[1]}x{img.pixels.shape[0]}",
                   "channels": img.pixels.shape[2], "subpixels": img.pixels.size}
            row["classical_bytes"] = classical_sizes(img.pixels)
            row["arcompress"], data = arcompress_row(img, decode=False)
            row["arcompress"].update(cli_round_trip(img, data, workdir))
            rows.append(row)
            save()
            log(f"{set_name} {path.name}: {row['arcompress']['bpsp_written']:.3f} bpsp written, "
                f"PNG {8 * row['classical_bytes']['PNG'] / img.pixels.size:.3f}, CLI decode "
                f"{row['arcompress']['cli_decode_s']:.1f} s, bit-exact")
    results.pop("recheck_started", None)
    return results


def summarize(results: dict) -> str:
    """Markdown tables of a results dict."""
    lines = [f"Run: `{results['command']}` on {results['date']}; CPU {results['machine']['cpu']}, "
             f"{results['machine']['cores']} threads, GPU {results['machine']['gpu'] or 'none'}; "
             f"torch {results['machine']['torch']}, constriction {results['machine']['constriction']}, "
             f"imagecodecs {results['machine']['imagecodecs']}.", ""]
    for u in results.get("updates", []):
        if "--recheck" in u["command"]:
            lines += [f"`{u['command']}` encoded every image again on {u['date']} and measured again the "
                      f"rows the encoder then wrote otherwise.", ""]
            continue
        lines += [f"Measurements missing from that run (codecs added since) or taken with an older .arc format "
                  f"were (re)measured on the same pixels by `{u['command']}` on {u['date']}.", ""]
    for set_name, rows in results["sets"].items():
        n = sum(r["subpixels"] for r in rows)
        codecs = [c for c in CODECS if all(c in r["classical_bytes"] for r in rows)]
        tot = {c: sum(8 * (r["classical_bytes"][c] or np.nan) for r in rows) / n for c in codecs}
        a = {k: sum(r["arcompress"].get(k, np.nan) * r["subpixels"] for r in rows) / n
             for k in ("bpsp_written", "bpsp_exact_nll", "bpsp_float_nll", "bpsp_float_nll_adapted")}
        lines += [f"**{set_name}** ({len(rows)} images, {n / 1e6:.2f} M sub-pixels; bits per sub-pixel, "
                  "size-weighted; every image round-tripped bit-exact through `arcompress encode` / `decode`)", "",
                  "| codec | bpsp | vs PNG |", "|---|---:|---:|"]
        for c in codecs:
            lines.append(f"| {c} | {tot[c]:.3f} | {100 * (tot[c] / tot['PNG'] - 1):+.1f} % |")
        lines.append(f"| **arcompress (bits written, header included)** | **{a['bpsp_written']:.3f}** | "
                     f"{100 * (a['bpsp_written'] / tot['PNG'] - 1):+.1f} % |")
        versions = sorted({r["arcompress"].get("format_version", 1) for r in rows})
        if versions[0] < container.IMAGE_LAYOUT_VERSION:
            lines += ["", f"The arcompress files above were written in .arc format version "
                          f"{'/'.join(map(str, versions))}, older than today's image layout (version "
                          f"{container.IMAGE_LAYOUT_VERSION}; README, 'The file format', lists what each "
                          "version changed)."]
        if any(_not_default(r["arcompress"], r["channels"]) for r in rows):
            used = sorted({"+".join(r["arcompress"]["models"]) for r in rows if "models" in r["arcompress"]})
            lines += ["", "They were written by " + (", ".join(f"`{u}`" for u in used) if used else
                          "the default models of that run (the rows do not name them)") +
                      f"; today's defaults are `{zoo.DEFAULTS[3]}` (RGB) and `{zoo.DEFAULTS[1]}` (grey), "
                      "and `--update` measures every row again with them."]
        # without calibrations, and with neither them nor level sets: the extra encodes' figures
        # where the file has them, else the file's own
        def _total(key: str, *fallbacks: str) -> float:
            def one(ar):
                for k in (key, *fallbacks):
                    if k in ar:
                        return ar[k]
                return np.nan
            return sum(one(r["arcompress"]) * r["subpixels"] for r in rows) / n
        uncal = {k: _total(f"{k}_without_calibration", k) for k in ("bpsp_written", "bpsp_exact_nll")}
        plain = {k: _total(f"{k}_plain", f"{k}_without_calibration", k) for k in ("bpsp_written", "bpsp_exact_nll")}
        lines += ["", f"arcompress: float model NLL {a['bpsp_float_nll']:.4f} (the model's own scales: what a paper "
                      f"reports), {a['bpsp_float_nll_adapted']:.4f} with the scales adapted per tile and channel; "
                      f"exact model NLL without level sets or calibrations {plain['bpsp_exact_nll']:.4f} (conversion "
                      f"{100 * (plain['bpsp_exact_nll'] / a['bpsp_float_nll_adapted'] - 1):+.2f} % vs the adapted float NLL), "
                      f"as coded {a['bpsp_exact_nll']:.4f}, "
                      f"written {a['bpsp_written']:.4f} ({100 * (a['bpsp_written'] / a['bpsp_exact_nll'] - 1):+.2f} % over the exact NLL).", ""]
        calibrated = [r for r in rows if "bpsp_written_without_calibration" in r["arcompress"]]
        if calibrated:
            lines += [_saving_line("Calibrations (a gain and an offset per model output, fitted per image, formats 13 and 14) "
                                   f"were written for {len(calibrated)} of {len(rows)} images; without them",
                                   uncal["bpsp_written"], a["bpsp_written"], tot["PNG"], "they save"), ""]
        leveled = [r for r in rows if "bpsp_written_plain" in r["arcompress"]]
        if leveled:
            lines += [_saving_line("Level sets (a channel's tables restricted to the levels it uses, format 8) were "
                                   f"written for {len(leveled)} of {len(rows)} images "
                                   f"({', '.join(r['image'] for r in leveled)}); without them or calibrations",
                                   plain["bpsp_written"], uncal["bpsp_written"], tot["PNG"], "the sets save"), ""]
        lines += ["| image | size | " + " | ".join(SHORT[c] for c in codecs) +
                  " | arcompress | without calibration | without either | exact NLL | float NLL | float, adapted "
                  "| overhead | CLI decode s |",
                  "|---|---|" + "---:|" * (len(codecs) + 8)]
        for r in rows:
            cb = [8 * r["classical_bytes"][c] / r["subpixels"] if r["classical_bytes"][c] else float("nan") for c in codecs]
            ar = r["arcompress"]
            lines.append(f"| {r['image']} | {r['size']}x{r['channels']} | " + " | ".join(f"{v:.3f}" for v in cb) +
                         f" | {ar['bpsp_written']:.3f} | {_without(ar, 'without_calibration')} | {_without(ar, 'plain')} | "
                         f"{ar['bpsp_exact_nll']:.3f} | {ar['bpsp_float_nll']:.3f} | "
                         f"{ar.get('bpsp_float_nll_adapted', np.nan):.3f} | "
                         f"{ar['overhead_pct']:+.2f} % | {ar['cli_decode_s']:.1f} |")
        lines.append("")
    cn = results["cached_vs_naive"]
    lines += [f"Decoder network on one {cn['tile']}x{cn['tile']} RGB tile, one thread: cached {cn['cached_s']:.2f} s, "
              f"naive (a full forward pass per pixel) {cn['naive_s']:.2f} s: **{cn['speedup']:.1f}x**; identical parameters.", ""]
    lines += ["| tile | bpsp written | decode px/s | probe | model |", "|---:|---:|---:|---|---|"]
    for r in results["tiling"]:
        model = ", ".join(f"`{m}`" for m in r["models"]) if "models" in r else "not recorded"
        lines.append(f"| {r['tile']} | {r['bpsp_written']:.4f} | {r['decode_px_per_s']:.0f} | {r['probe']} | {model} |")
    for r in results.get("decode_speed", []):
        lines.append("")
        lines.append(f"{r['image']}, central {r['size']} RGB crop, `{', '.join(r['models'])}`: "
                     f"encode {r['encode_px_per_s']:.0f} px/s, decode {r['decode_px_per_s']:.0f} px/s "
                     f"({r['bpsp_written']:.3f} bpsp).")
    return "\n".join(lines) + "\n"
