"""Small images: one file per image (header included) and many images in one stream, against the
classical codecs on the same pixels.

Sets (never trained on):

* **fashion-mnist 28x28 grey**: the Fashion-MNIST *test* images (Debian ``dataset-fashion-mnist``;
  ``python -m benchmarks fetch-data`` downloads it).  Model ``pixelcnn-fashion28``, trained on the
  60 000 training images only.
* **dev photos 32x32 RGB**: a CIFAR-like set cut from the RGB dev photos (the 14 USC-SIPI images and
  ``flower_foveon_rgb``): crops at fixed random positions (seed 0).  The default RGB model, which
  was trained on 32x32 crops of the training photos, and ``--model best`` (every shipped RGB model
  tried per file).

For each image: every classical codec writes one file; arcompress writes one ``.arc`` (header
included) through the API and reports the exact NLL; the float NLL comes from the float model the
exact one was converted from.  "One stream": the set's images stacked into one tall image coded
with tiles of exactly one image, so every image is coded alone (no context from the others) and
only the header is shared; that stream is decoded and checked image by image.
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from arcompress import codec, container, zoo
from arcompress.media import ImageData, from_array, write_image

from .audio import unpack_deb
from .images import CODECS, DATA as DEV, classical_sizes, float_tile_bits, level_set_counts, load, run_cli, start_results

DATA = Path(__file__).resolve().parent / "data"
FASHION = DATA / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"
FASHION_MODEL = "pixelcnn-fashion28"
RGB_MODEL = zoo.DEFAULTS[3]
#: images decoded one file at a time (the rest are checked through the stream)
PER_FILE_DECODES = 20


def fetch(log=print) -> None:
    """Download the Fashion-MNIST test images into benchmarks/data (apt-get download; no root)."""
    DATA.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = unpack_deb("dataset-fashion-mnist", tmp)
        FASHION.parent.mkdir(exist_ok=True)
        shutil.copy(next(root.rglob(FASHION.name)), FASHION)
    log(f"Fashion-MNIST test images in {FASHION}")


def fashion_images(count: int) -> list[tuple[str, np.ndarray]]:
    """The first ``count`` Fashion-MNIST test images as (name, (28, 28, 1) uint8)."""
    if not FASHION.exists():
        raise SystemExit("Fashion-MNIST missing: run 'python -m benchmarks fetch-data' first")
    raw = gzip.open(FASHION).read()
    a = np.frombuffer(raw[16:], np.uint8).reshape(-1, 28, 28, 1)
    return [(f"t10k-{i:05d}", a[i]) for i in range(min(count, len(a)))]


def dev_crops(per_image: int, size: int = 32) -> list[tuple[str, np.ndarray]]:
    """``per_image`` size x size crops of each RGB dev photo, at positions drawn with seed 0."""
    rng = np.random.default_rng(0)
    paths = sorted((DEV / "usc-sipi-color").glob("*.png")) + [DEV / "imagecompression-info" / "flower_foveon_rgb.png"]
    out = []
    for p in paths:
        a = load(p, None).pixels
        for _ in range(per_image):
            y, x = rng.integers(0, a.shape[0] - size + 1), rng.integers(0, a.shape[1] - size + 1)
            out.append((f"{p.stem}@{y},{x}", np.ascontiguousarray(a[y:y + size, x:x + size])))
    return out


def sets(quick: bool) -> dict[str, tuple[str, list[tuple[str, np.ndarray]]]]:
    """set name -> (model name, [(image name, (S, S, C) uint8)])."""
    crops = dev_crops(2 if quick else 20)
    return {"fashion-mnist 28x28 grey (test set)": (FASHION_MODEL, fashion_images(20 if quick else 1000)),
            "dev photos 32x32 RGB crops": (RGB_MODEL, crops),
            "dev photos 32x32 RGB crops, --model best": (zoo.BEST, crops)}


def float_nll(model: zoo.ExactModel, images: np.ndarray) -> np.ndarray:
    """Float-model NLL (bits) of each whole image, with the model's own scales and with adapted
    ones (images.float_tile_bits): (N, S, S, C) uint8 -> (N, 2) float64."""
    net = model.float_model()
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    out = []
    with torch.no_grad():
        for s in range(0, len(x), 64):
            b = x[s:s + 64]
            own, adapted = float_tile_bits(net(b), b, torch.ones(len(b), 1, *b.shape[2:]))
            out.append(torch.stack([own, adapted], 1).double().numpy())
    return np.concatenate(out)


def run_set(model_name: str, items: list[tuple[str, np.ndarray]], workdir: Path, log=print) -> dict:
    """Measure one set (see the module docstring).  ``model_name`` may be ``best`` (zoo.BEST): each
    file is then coded by the shipped model the encoder picks, and each row names it."""
    stack = np.stack([a for _, a in items])
    n, s, _, c = stack.shape
    dims = s * s * c
    candidates = zoo.shipped_image_models(c) if model_name == zoo.BEST else [zoo.resolve(model_name)]
    by_digest = {m.digest[:8]: m for m in candidates}
    pick = lambda ch: candidates if len(candidates) > 1 else candidates[0]  # noqa: E731 - one channel count
    find = lambda name, digest: by_digest[bytes(digest[:8])]  # noqa: E731
    rows = []
    t_enc = t_dec = 0.0
    floats = {m.name: float_nll(m, stack) for m in candidates}  # each image's row: its model's
    for k, (name, a) in enumerate(items):
        img = from_array(a[:, :, 0] if c == 1 else a)
        t0 = time.perf_counter()
        data, stats = codec.encode_image(img, pick, tile=s, progress=False)
        t_enc += time.perf_counter() - t0
        own, adapted = floats[stats.models[0]][k]
        row = {"image": name, "bytes": len(data), "header_bytes": len(data) - stats.payload_bytes,
               "model": stats.models[0], "exact_nll_bits": stats.nll_bits, "float_nll_bits": float(own),
               "float_nll_adapted_bits": float(adapted), "format_version": data[4],
               "level_sets": level_set_counts(data), "classical_bytes": classical_sizes(a)}
        if k < PER_FILE_DECODES:
            t0 = time.perf_counter()
            back = codec.decode_image(data, find, progress=False)
            t_dec += time.perf_counter() - t0
            if not np.array_equal(back.pixels, img.pixels):
                raise RuntimeError(f"{name}: round trip failed")
        rows.append(row)
        if (k + 1) % 100 == 0:
            log(f"  {k + 1}/{n} images")
    # many images in one stream: a tall image whose tiles are exactly the images
    tall = ImageData(stack.reshape(n * s, s, c), "L" if c == 1 else "RGB", {})
    t0 = time.perf_counter()
    stream, sstats = codec.encode_image(tall, pick, tile=s, progress=False)
    t_stream_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    back = codec.decode_image(stream, find, progress=False)
    t_stream_dec = time.perf_counter() - t0
    if not np.array_equal(back.pixels, tall.pixels):
        raise RuntimeError("stream round trip failed")
    return {
        "model": model_name, "model_sha256": {m.name: m.digest.hex() for m in candidates},
        "stream_model": sstats.models[0], "images": n, "size": f"{s}x{s}x{c}",
        "dims_per_image": dims, "rows": rows,
        "per_file_encode_images_per_s": n / t_enc,
        "per_file_decode_images_per_s": min(n, PER_FILE_DECODES) / t_dec,
        "per_file_decoded": min(n, PER_FILE_DECODES),
        "stream": {"bytes": len(stream), "header_bytes": len(stream) - sstats.payload_bytes,
                   "level_sets": level_set_counts(stream),
                   "exact_nll_bits": sstats.nll_bits, "encode_images_per_s": n / t_stream_enc,
                   "decode_images_per_s": n / t_stream_dec, "round_trip_exact": True},
        "cli": cli_measure(model_name, items[0][1], workdir),
    }


def cli_measure(model_name: str, a: np.ndarray, workdir: Path) -> dict:
    """The user's path for one image: CLI encode and decode in new processes (time, peak memory)."""
    c = a.shape[2]
    src, arc, out = workdir / "small.png", workdir / "small.png.arc", workdir / "small-out.png"
    for f in (src, arc, out):
        f.unlink(missing_ok=True)
    write_image(src, from_array(a[:, :, 0] if c == 1 else a))
    t_enc, mem_enc = run_cli(["encode", str(src), "--model", model_name, "-q"])
    t_dec, mem_dec = run_cli(["decode", str(arc), "-o", str(out), "-q"])
    with Image.open(out) as im:
        decoded = np.asarray(im)
    if not np.array_equal(decoded.reshape(-1), a.reshape(-1)):
        raise RuntimeError("CLI round trip failed")
    return {"encode_s": t_enc, "decode_s": t_dec, "encode_peak_mb": mem_enc, "decode_peak_mb": mem_dec,
            "peak": "VmHWM", "round_trip_exact": True}


def run(quick: bool, command: str, partial: Path | None = None, log=print) -> dict:
    """Measure every set; after each the results so far are saved to ``partial`` (JSON), and a
    rerun with the same models resumes from it."""
    results = start_results(quick, command, partial, log, sets={})
    workdir = Path(tempfile.mkdtemp(prefix="arcompress-small-"))
    for name, (model, items) in sets(quick).items():
        if name in results["sets"] and _stale(results["sets"][name], model, items[0][1].shape[2]):
            log(f"{name}: measured in an older .arc format or with other models: measuring it again")
            del results["sets"][name]
        if name in results["sets"]:
            if results["sets"][name]["cli"].get("peak") != "VmHWM":  # measured before VmHWM was used
                results["sets"][name]["cli"] = cli_measure(model, items[0][1], workdir)
            continue
        log(f"{name}: {len(items)} images, model {model}")
        results["sets"][name] = run_set(model, items, workdir, log)
        if partial is not None:
            partial.write_text(json.dumps(results, indent=1))
    return results


def _stale(saved: dict, model: str, channels: int) -> bool:
    """Whether a saved set was written in an older .arc format or by other models than ``model``
    (a name, or zoo.BEST: every shipped model for ``channels``) is today."""
    if any(row.get("format_version", 1) < container.IMAGE_LAYOUT_VERSION for row in saved["rows"]):
        return True
    candidates = zoo.shipped_image_models(channels) if model == zoo.BEST else [zoo.resolve(model)]
    return saved.get("model_sha256") != {m.name: m.digest.hex() for m in candidates}


def per_image_bits(r: dict) -> dict[str, float]:
    """Mean bits per image of every codec and of arcompress (file, exact NLL, float NLL, stream)."""
    rows = r["rows"]
    out = {c: 8 * float(np.mean([x["classical_bytes"][c] for x in rows])) for c in CODECS}
    out["arcompress (one file each)"] = 8 * float(np.mean([x["bytes"] for x in rows]))
    out["arcompress (one stream)"] = 8 * r["stream"]["bytes"] / r["images"]
    out["exact NLL"] = float(np.mean([x["exact_nll_bits"] for x in rows]))
    out["float NLL"] = float(np.mean([x["float_nll_bits"] for x in rows]))
    if all("float_nll_adapted_bits" in x for x in rows):
        out["float NLL, adapted scales"] = float(np.mean([x["float_nll_adapted_bits"] for x in rows]))
    return out


def _models_used(r: dict) -> str:
    """The model(s) of a set's results: the SHA-256 prefix, or for ``best`` how often each was picked."""
    sha = r["model_sha256"]
    if isinstance(sha, str):  # results written before --model best was measured
        return sha[:12]
    if len(sha) == 1:
        return next(iter(sha.values()))[:12]
    picked = [x["model"] for x in r["rows"]]
    counts = ", ".join(f"`{m}` ({sha[m][:12]}) {picked.count(m)}" for m in sha)
    return f"picked per file: {counts}; the stream: `{r['stream_model']}`"


def _level_set_note(r: dict) -> str:
    """How many of a set's files carry level sets (format 8), or "" for results that did not record it."""
    if not all("level_sets" in x for x in r["rows"]):
        return ""
    with_sets = [x for x in r["rows"] if any(n is not None for n in x["level_sets"])]
    if not with_sets:
        return " No file carries level sets."
    header = np.mean([x["header_bytes"] for x in with_sets])
    stream = "does" if any(n is not None for n in r["stream"].get("level_sets", [])) else "does not"
    return (f" {len(with_sets)} files carry level sets (their headers {header:.1f} bytes on average, "
            f"the set fields included); the stream {stream}.")


def summarize(results: dict) -> str:
    """Markdown for the small-image sets."""
    m = results["machine"]
    lines = [f"Run: `{results['command']}` on {results['date']}; CPU {m['cpu']}, {m['cores']} threads, "
             f"GPU {m['gpu'] or 'none'}; torch {m['torch']}, imagecodecs {m['imagecodecs']}.", ""]
    for u in results.get("updates", []):
        lines += [f"Completed by `{u['command']}` on {u['date']} (measurements missing from the saved "
                  "results, or taken the old way, were redone; the rest was kept).", ""]
    for name, r in results["sets"].items():
        bits = per_image_bits(r)
        dims = r["dims_per_image"]
        best = min(CODECS, key=lambda c: bits[c])
        lines += [f"**{name}**: {r['images']} images of {r['size']}, model `{r['model']}` "
                  f"({_models_used(r)}); bits per image (mean) and bits per dimension", "",
                  "| codec | bits / image | bits / dim | vs best classical |", "|---|---:|---:|---:|"]
        for k, v in bits.items():
            label = f"**{k}**" if k.startswith("arcompress") else k
            lines.append(f"| {label} | {v:.1f} | {v / dims:.3f} | {100 * (v / bits[best] - 1):+.1f} % |")
        hb = np.mean([x["header_bytes"] for x in r["rows"]])
        wins = sum(x["bytes"] < min(x["classical_bytes"][c] for c in CODECS) for x in r["rows"])
        lines += ["", f"One file per image: header {hb:.1f} bytes on average; smaller than every classical "
                      f"codec on {wins} of {r['images']} images.{_level_set_note(r)} One stream: "
                      f"{r['stream']['header_bytes']} header bytes "
                      f"for all {r['images']}, decoded and checked image by image. Speed: one file each "
                      f"{r['per_file_encode_images_per_s']:.1f} images/s encode, "
                      f"{r['per_file_decode_images_per_s']:.1f} images/s decode (first {r['per_file_decoded']}); "
                      f"one stream {r['stream']['encode_images_per_s']:.0f} / {r['stream']['decode_images_per_s']:.0f} "
                      f"images/s. CLI, one image, new process: encode {r['cli']['encode_s']:.1f} s "
                      f"({r['cli']['encode_peak_mb']:.0f} MB peak), decode {r['cli']['decode_s']:.1f} s "
                      f"({r['cli']['decode_peak_mb']:.0f} MB peak), bit-exact.", ""]
    return "\n".join(lines) + "\n"
