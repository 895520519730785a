"""Single- vs multi-resolution PixelCNN++ trained with one recipe: bits and seconds on a CPU.

The issue asks to ship the single-resolution variant only if it gives more compression per second
on a CPU than PixelCNN++'s strided multi-resolution structure.  The shipped models had far more
training than any comparison run here could, so the comparison is between two models trained
*from scratch with the same recipe* (data, crops, batch, steps, learning rate, seed, one thread
each, run side by side on this 2-core machine):

    arcompress train ../shared/data/images/train/wikipedia -o runs/cmp/single.safetensors \\
        --arch pixelcnn --filters 48 --blocks 3 --steps 2000 --batch 16 --crop 32 --val-images 5 \\
        --checkpoint-every 250 --threads 1 --lr 1e-3
    arcompress train ../shared/data/images/train/wikipedia -o runs/cmp/multi.safetensors \\
        --arch multires --filters 48 --blocks 1 --resolutions 3 --steps 2000 --batch 16 --crop 32 \\
        --val-images 5 --checkpoint-every 250 --threads 1 --lr 1e-3

(``single``: the shipped models' shape, 3 blocks per stream at full resolution; ``multi``: 1 block
per resolution and pass at 32, 16 and 8, the same training cost per step.)  Measured per model:
the validation curve from the model file, and on the ``models`` benchmark's crops (256x256 of
the USC-SIPI dev images and flower_foveon_rgb) float NLL, exact NLL, bits written, encode and
decode pixels per second and a bit-exact round trip.
"""

from __future__ import annotations

import json
from pathlib import Path

from arcompress import zoo

from .images import start_results
from .models import images, measure, totals_cells

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"single-resolution": ROOT / "runs" / "cmp" / "single.safetensors",
          "multi-resolution": ROOT / "runs" / "cmp" / "multi.safetensors"}


def ready() -> bool:
    """Whether the comparison models have been trained (they are not shipped)."""
    return all(p.exists() for p in MODELS.values())


def run(quick: bool, command: str, partial: Path | None = None, log=print) -> dict:
    missing = [str(p) for p in MODELS.values() if not p.exists()]
    if missing:
        raise SystemExit(f"resolutions benchmark: train the comparison models first (see "
                         f"benchmarks/resolutions.py): missing {', '.join(missing)}")
    results = start_results(quick, command, partial, log, rows=[], models={})
    for label, path in MODELS.items():
        m = zoo.load_model(path)
        results["models"][label] = {
            "file": str(path.relative_to(ROOT)), "arch": m.arch, "config": m.config.to_dict(),
            "sha256": m.digest.hex(), "bytes": path.stat().st_size, "steps": m.metadata.get("steps"),
            "train_options": json.loads(m.metadata.get("train_options", "{}")),
            "history": json.loads(m.metadata.get("history", "[]"))}

    def save():
        if partial is not None:
            partial.write_text(json.dumps(results, indent=1))

    done = {(r["image"], r["model"]) for r in results["rows"]}
    for image, img in images(quick):
        for label, path in MODELS.items():
            if (image, label) in done:
                continue
            row = {"image": image, "model": label, "size": f"{img.pixels.shape[1]}x{img.pixels.shape[0]}",
                   "subpixels": img.pixels.size, **measure(str(path), img)}
            results["rows"].append(row)
            save()
            log(f"{image} {label}: {row['bpsp_written']:.3f} bpsp, decode {row['decode_px_per_s']:.0f} px/s")
    return results


def summarize(results: dict) -> str:
    rows, m = results["rows"], results["machine"]
    labels = list(results["models"])
    lines = [f"Run: `{results['command']}` on {results['date']}; CPU {m['cpu']}, {m['cores']} threads, "
             f"GPU {m['gpu'] or 'none'}; torch {m['torch']}.", "",
             "Validation (float model, 5 held-out training photos, 32×32 crops) during the same training run:", "",
             "| step | " + " | ".join(labels) + " |", "|---:|" + "---:|" * len(labels)]
    hist = {k: {h["step"]: h["val_bpsp"] for h in results["models"][k]["history"]} for k in labels}
    for step in sorted(set().union(*hist.values())):
        lines.append(f"| {step} | " + " | ".join(f"{hist[k][step]:.4f}" if step in hist[k] else "" for k in labels) + " |")
    lines += ["", "| model | file size | images | float NLL | exact NLL | bits written | encode px/s | "
                  "decode px/s | round trips |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for label in labels:
        g = [r for r in rows if r["model"] == label]
        if g:
            info, cfg = results["models"][label], results["models"][label]["config"]
            shape = f"{info['arch']}, {cfg['blocks']} block(s)" + \
                (f" per resolution and pass, {cfg['resolutions']} resolutions" if "resolutions" in cfg else " per stream")
            lines.append(f"| {label} ({shape}) | {info['bytes'] / 1e6:.1f} MB | {totals_cells(g)}")
    return "\n".join(lines) + "\n"
