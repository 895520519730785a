"""The overview built from the saved results: our numbers beside the papers', and two plots.

Nothing here measures: :func:`build` reads ``benchmarks/results/{images,small,audio}.json`` and
writes ``overview.png`` (bits per dimension by codec and data set) and ``speed.png`` (decoding
speed against bits, for the tile and chunk sizes measured), and returns the markdown that
README.md includes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .images import CODECS

#: test NLL in bits per dimension as reported in each paper (not measured here)
PAPERS = [
    # model, paper, CIFAR-10, ImageNet 32x32, ImageNet 64x64
    ("PixelCNN", "van den Oord et al. 2016, Pixel Recurrent Neural Networks", 3.14, None, None),
    ("PixelRNN (Diagonal BiLSTM / Row LSTM)", "van den Oord et al. 2016, Pixel Recurrent Neural Networks",
     3.00, 3.86, 3.63),
    ("Gated PixelCNN", "van den Oord et al. 2016, Conditional Image Generation with PixelCNN Decoders",
     3.03, 3.83, 3.57),
    ("PixelCNN++", "Salimans et al. 2017", 2.92, None, None),
    ("PixelSNAIL", "Chen et al. 2018", 2.85, 3.80, 3.52),
]


def _load(results: Path, name: str) -> dict | None:
    p = results / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def image_bpsp(imgs: dict | None, small: dict | None) -> dict[str, dict[str, float]]:
    """data set -> codec -> bits per sub-pixel (arcompress: bits written, header included)."""
    out: dict[str, dict[str, float]] = {}
    for name, rows in (imgs or {}).get("sets", {}).items():
        n = sum(r["subpixels"] for r in rows)
        d = {c: sum(8 * r["classical_bytes"][c] for r in rows) / n for c in CODECS
             if all(r["classical_bytes"].get(c) for r in rows)}
        d["arcompress"] = sum(r["arcompress"]["bpsp_written"] * r["subpixels"] for r in rows) / n
        out[name.split(" (")[0]] = d
    for name, r in (small or {}).get("sets", {}).items():
        dims = r["dims_per_image"] * len(r["rows"])
        d = {c: sum(8 * x["classical_bytes"][c] for x in r["rows"]) / dims for c in CODECS}
        d["arcompress"] = sum(8 * x["bytes"] for x in r["rows"]) / dims
        out[name.split(" (")[0]] = d
    return out


def audio_bits(aud: dict | None) -> dict[str, dict[str, float]]:
    """group -> codec -> bits per sample."""
    out: dict[str, dict[str, float]] = {}
    rows = (aud or {}).get("files", [])
    for group in dict.fromkeys(r["group"] for r in rows):
        g = [r for r in rows if r["group"] == group]
        n = sum(r["samples"] for r in g)
        d = {k: sum(8 * r[k] for r in g) / n for k in ("FLAC-8", "WavPack-hh", "TTA", "ALAC")
             if all(r.get(k) for r in g)}
        d["arcompress"] = sum(8 * r["bytes"] for r in g) / n
        out[group] = d
    return out


def _bars(ax, table: dict[str, dict[str, float]], ylabel: str) -> None:
    sets = list(table)
    codecs = list(dict.fromkeys(c for d in table.values() for c in d))
    width = 0.8 / max(1, len(codecs))
    for k, c in enumerate(codecs):
        vals = [table[s].get(c, np.nan) for s in sets]
        ax.bar(np.arange(len(sets)) + (k - (len(codecs) - 1) / 2) * width, vals, width, label=c,
               color="black" if c == "arcompress" else None)
    ax.set_xticks(np.arange(len(sets)), sets, rotation=15, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, ncol=2)


def _tradeoff(ax, rows: list[dict], knob: str, x: str, y: str, xlabel: str, ylabel: str, title: str) -> None:
    """Bits against decoding speed, one labelled point per setting of ``knob``."""
    ax.plot([r[x] for r in rows], [r[y] for r in rows], "o-")
    for r in rows:
        ax.annotate(f"{knob} {r[knob]}", (r[x], r[y]), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)


def plots(results: Path, imgs, small, aud) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    ib, ab = image_bpsp(imgs, small), audio_bits(aud)
    if ib or ab:
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [2, 1]})
        _bars(axes[0], ib, "bits per sub-pixel (lower is better)")
        axes[0].set_title("images: bits written, header included")
        _bars(axes[1], ab, "bits per sample (lower is better)")
        axes[1].set_title("audio")
        fig.tight_layout()
        fig.savefig(results / "overview.png", dpi=90)
        plt.close(fig)
        written.append("overview.png")
    if imgs and aud:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        _tradeoff(axes[0], imgs["tiling"], "tile", "decode_px_per_s", "bpsp_written",
                  "decode pixels / s (2 cores)", "bits per sub-pixel",
                  f"images: tile size ({imgs['tiling'][0]['probe']} probes)")
        _tradeoff(axes[1], aud["chunks"], "chunk", "decode_samples_per_s", "bits_per_sample",
                  "decode samples / s (1 process)", "bits per sample", "audio: chunk size")
        fig.tight_layout()
        fig.savefig(results / "speed.png", dpi=90)
        plt.close(fig)
        written.append("speed.png")
    return written


def papers_table(small: dict | None) -> list[str]:
    lines = ["| model | CIFAR-10 | ImageNet 32x32 | ImageNet 64x64 | source |", "|---|---:|---:|---:|---|"]
    f = lambda v: f"{v:.2f}" if v else "-"  # noqa: E731
    for model, paper, c10, i32, i64 in PAPERS:
        lines.append(f"| {model} | {f(c10)} | {f(i32)} | {f(i64)} | {paper} (reported) |")
    for name, r in (small or {}).get("sets", {}).items():
        dims = r["dims_per_image"] * len(r["rows"])
        fl = sum(x["float_nll_bits"] for x in r["rows"]) / dims
        ex = sum(x["exact_nll_bits"] for x in r["rows"]) / dims
        wr = sum(8 * x["bytes"] for x in r["rows"]) / dims
        lines.append(f"| **arcompress `{r['model']}`** on {name} | - | - | - | measured here: float NLL "
                     f"{fl:.3f}, exact NLL {ex:.3f}, written one file per image {wr:.3f} bits/dim |")
    return lines


def params_note(small: dict | None) -> str:
    from arcompress import zoo

    sets = (small or {}).get("sets", {}).values()
    names = sorted({n for r in sets for n in (r["model_sha256"] if isinstance(r["model_sha256"], dict)
                                              else [r["model"]])}) or [zoo.DEFAULTS[3]]
    counts = []
    for n in names:
        net = zoo.resolve(n).float_model()
        counts.append(f"`{n}` {sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters")
    return ", ".join(counts)


def build(results: Path) -> str:
    imgs, small, aud = (_load(results, n) for n in ("images", "small", "audio"))
    written = plots(results, imgs, small, aud)
    lines = ["Test NLL (bits per dimension) reported by the papers beside ours. **They are not the same "
             "measurement**: the papers train much larger models for days on GPUs on CIFAR-10's 50 000 "
             "training images and report its test set; CIFAR-10 cannot be downloaded here, so our 32x32 RGB "
             "numbers are on crops of the dev photos (different content, photographic noise), and our models "
             f"({params_note(small)}) were trained for one to six hours each on one or two CPU cores (`pixelcnn-rgb9`: `pixelcnn-rgb`'s run of about 1.5 hours, then 73, 44, 51, 80, 52, 35, 51 and 50 minutes more for `pixelcnn-rgb2`, `-rgb3`, `-rgb4`, `-rgb5`, `-rgb6`, `-rgb7`, `-rgb8` and `-rgb9`).", ""]
    lines += papers_table(small)
    lines.append("")
    for name in written:
        lines.append(f"![{name}](benchmarks/results/{name})")
        lines.append("")
    return "\n".join(lines)
