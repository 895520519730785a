"""The shipped RGB models side by side (PixelCNN++, PixelSNAIL, multi-resolution PixelCNN++) on the
same pixels and tiles: NLL, bits written, speed; and the shipped grey models on grey versions of
the same crops (Pillow ``L``), so that every shipped image model is measured on 256x256 inputs.

Data: central crops of every USC-SIPI dev image and of ``flower_foveon_rgb`` (RGB; never trained
on).  For each image and each model: the float model's NLL, the exact model's NLL and the bits
written (header included), encode and decode time in this process (decode: the default 2
processes for images of 32 768 pixels or more), and a bit-exact check of the round trip.  Then,
for PixelSNAIL, the tile size: attention covers the whole past *of the tile*, so the tile bounds
both what a pixel can see and what a decoding step costs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from arcompress import codec, zoo
from arcompress.media import ImageData, from_array

from .images import DATA, _outdated, float_nll_bits, load, start_results

#: every shipped RGB model, in the order zoo.SHIPPED lists them
MODELS = [m.name for m in zoo.shipped_image_models(3)]
#: every shipped grey (one-plane) image model, measured on grey versions of the crops
GREY_MODELS = [m.name for m in zoo.shipped_image_models(1)]


def grey(img: ImageData) -> ImageData:
    """The crop converted to grey as Pillow does (``L``)."""
    return from_array(np.asarray(Image.fromarray(img.pixels).convert("L")))


def images(quick: bool) -> list[tuple[str, ImageData]]:
    crop = 64 if quick else 256
    paths = sorted((DATA / "usc-sipi-color").glob("*.png"))
    paths = paths[:2] if quick else paths + [DATA / "imagecompression-info" / "flower_foveon_rgb.png"]
    return [(p.name, load(p, crop)) for p in paths]


def measure(name: str, img: ImageData, tile: int = codec.DEFAULT_TILE) -> dict:
    model = zoo.resolve(name)
    pick = lambda ch: model  # noqa: E731
    n = img.pixels.size
    t0 = time.perf_counter()
    data, stats = codec.encode_image(img, pick, tile=tile, progress=False)
    t_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    back = codec.decode_image(data, lambda *_: model, progress=False)
    t_dec = time.perf_counter() - t0
    if not np.array_equal(back.pixels, img.pixels):
        raise RuntimeError(f"{name}: round trip failed")
    px = img.pixels.shape[0] * img.pixels.shape[1]
    own, adapted = float_nll_bits(img, tile, pick)
    return {"bpsp_written": 8 * len(data) / n, "bpsp_exact_nll": stats.nll_bits / n,
            "bpsp_float_nll": own / n, "bpsp_float_nll_adapted": adapted / n, "encode_px_per_s": px / t_enc,
            "decode_px_per_s": px / t_dec, "round_trip_exact": True, "format_version": data[4]}


def run(quick: bool, command: str, partial: Path | None = None, log=print) -> dict:
    results = start_results(quick, command, partial, log, rows=[], tiles=[])

    def save():
        if partial is not None:
            partial.write_text(json.dumps(results, indent=1))

    results["rows"] = [r for r in results["rows"] if not _outdated(r)]  # older .arc formats: measure again
    results["tiles"] = [r for r in results["tiles"] if not _outdated(r)]
    done = {(r["image"], r["model"]) for r in results["rows"]}
    items = images(quick)
    for image, img in items:
        for name in MODELS:
            if (image, name) in done:
                continue
            row = {"image": image, "model": name, "size": f"{img.pixels.shape[1]}x{img.pixels.shape[0]}",
                   "channels": 3, "subpixels": img.pixels.size, **measure(name, img)}
            results["rows"].append(row)
            save()
            log(f"{image} {name}: {row['bpsp_written']:.3f} bpsp, decode {row['decode_px_per_s']:.0f} px/s")
        for name in GREY_MODELS:
            if (image, name) in done:
                continue
            g = grey(img)
            row = {"image": image, "model": name, "size": f"{g.pixels.shape[1]}x{g.pixels.shape[0]}",
                   "channels": 1, "subpixels": g.pixels.size, **measure(name, g)}
            results["rows"].append(row)
            save()
            log(f"{image} {name} (grey): {row['bpsp_written']:.3f} bpsp, decode {row['decode_px_per_s']:.0f} px/s")
    done_tiles = {r["tile"] for r in results["tiles"]}
    probes = items[:2]
    for tile in (8, 16) if quick else (16, 32, 64):
        if tile in done_tiles:
            continue
        rows = [measure("pixelsnail", img, tile) for _, img in probes]
        n = sum(img.pixels.size for _, img in probes)
        px = sum(img.pixels.shape[0] * img.pixels.shape[1] for _, img in probes)
        results["tiles"].append({
            "tile": tile, "images": [i for i, _ in probes],
            "bpsp_written": sum(r["bpsp_written"] * img.pixels.size for r, (_, img) in zip(rows, probes)) / n,
            "decode_px_per_s": px / sum(img.pixels.shape[0] * img.pixels.shape[1] / r["decode_px_per_s"]
                                        for r, (_, img) in zip(rows, probes)),
            "format_version": rows[0]["format_version"]})
        save()
        log(f"pixelsnail tile {tile}: {results['tiles'][-1]}")
    return results


def totals_cells(g: list[dict]) -> str:
    """Markdown cells "images | float NLL | float NLL, adapted scales | exact NLL | bits written |
    encode px/s | decode px/s | round trips |" over rows ``g`` (bits weighted by sub-pixels, speeds
    by pixels)."""
    n = sum(r["subpixels"] for r in g)
    pixels = [r["subpixels"] / r.get("channels", 3) for r in g]
    avg = {k: sum(r.get(k, np.nan) * r["subpixels"] for r in g) / n
           for k in ("bpsp_float_nll", "bpsp_float_nll_adapted", "bpsp_exact_nll", "bpsp_written")}
    enc = sum(pixels) / sum(p / r["encode_px_per_s"] for p, r in zip(pixels, g))
    dec = sum(pixels) / sum(p / r["decode_px_per_s"] for p, r in zip(pixels, g))
    return (f"{len(g)} | {avg['bpsp_float_nll']:.4f} | {avg['bpsp_float_nll_adapted']:.4f} | "
            f"{avg['bpsp_exact_nll']:.4f} | **{avg['bpsp_written']:.4f}** | "
            f"{enc:.0f} | {dec:.0f} | {'all exact' if all(r['round_trip_exact'] for r in g) else 'FAILED'} |")


def summarize(results: dict) -> str:
    rows = results["rows"]
    m = results["machine"]
    lines = [f"Run: `{results['command']}` on {results['date']}; CPU {m['cpu']}, {m['cores']} threads, "
             f"GPU {m['gpu'] or 'none'}; torch {m['torch']}.", ""]
    for u in results.get("updates", []):
        lines += [f"Rows for models added since, or measured with an older .arc format, were (re)measured on "
                  f"the same crops by `{u['command']}` on {u['date']}.", ""]
    if any(map(_outdated, rows)):
        versions = sorted({r.get("format_version", 1) for r in rows})
        lines += [f"These rows were measured with .arc format version {'/'.join(map(str, versions))}, not "
                  "today's (README, 'The file format'); `--update` measures them again.", ""]
    lines += ["| model | images | float NLL | float NLL, adapted scales | exact NLL | bits written | encode px/s "
              "| decode px/s | round trips |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name in MODELS + GREY_MODELS:
        g = [r for r in rows if r["model"] == name]
        if g:
            label = f"`{name}`" + (" (grey crops)" if name in GREY_MODELS else "")
            lines.append(f"| {label} | {totals_cells(g)}")
    names = [m for m in MODELS if any(r["model"] == m for r in rows)]
    base, others = names[0], names[1:]
    lines += ["", "Per image (bits per sub-pixel written, header included):", "",
              "| image | size | " + " | ".join(names) + "".join(f" | {o} vs {base}" for o in others) + " |",
              "|---|---|" + "---:|" * (len(names) + len(others))]
    for image in dict.fromkeys(r["image"] for r in rows):
        by = {r["model"]: r["bpsp_written"] for r in rows if r["image"] == image}
        if len(by) < len(names):
            continue
        size = next(r["size"] for r in rows if r["image"] == image)
        lines.append(f"| {image} | {size} | " + " | ".join(f"{by[m]:.3f}" for m in names)
                     + "".join(f" | {100 * (by[o] / by[base] - 1):+.2f} %" for o in others) + " |")
    if results["tiles"]:
        lines += ["", f"PixelSNAIL tile size (attention covers the tile's whole past; "
                      f"{', '.join(results['tiles'][0]['images'])}):", "",
                  "| tile | positions attended (at most) | bits written | decode px/s |", "|---:|---:|---:|---:|"]
        for t in results["tiles"]:
            lines.append(f"| {t['tile']} | {t['tile'] ** 2 - 1} | {t['bpsp_written']:.4f} | {t['decode_px_per_s']:.0f} |")
    return "\n".join(lines) + "\n"
