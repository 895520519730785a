"""CLI round trips on the audio of ../shared/data: whole recordings through ``python -m
arcompress encode`` and ``decode``, the way a user runs them, compared sample for sample.

The sets: every recording of ``sms-tools`` (11, 44.1 kHz) and every ``FSDD_STEP``-th FSDD
recording by name (8 kHz spoken digits; the sorted names run digit by digit, so the pick holds
every digit and speaker).  All of FSDD would take hours to decode on a 2-core CPU: a 0.4 s clip
is 4 chunks, so its 1024 decoding steps share little work.  Both sets are training data of the
shipped audio models: this measures exactness and the CLI, not compression (the audio benchmark
does that, on held-out recordings).

Each set is one ``encode`` process over all its files, then one ``decode`` process over all the
.arc files; each decoded file must have the original's samples, rate, channel count, subtype
and text tags.  Times are wall-clock seconds of those processes (start-up and model loading
included).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from arcompress import container
from arcompress.audiofile import read_audio

from .audio import SHARED, flac_bytes
from .images import machine, today

#: every FSDD_STEP-th FSDD recording (sorted by name) is round-tripped
FSDD_STEP = 30


def sets(quick: bool) -> dict[str, list[Path]]:
    """Set name -> the recordings it round-trips."""
    sms = sorted((SHARED / "sms-tools").glob("*.flac"))
    fsdd = sorted((SHARED / "fsdd").glob("*.flac"))
    if quick:
        return {"sms-tools (first file)": sms[:1], "FSDD (2 files)": fsdd[:2]}
    return {f"sms-tools (all {len(sms)})": sms, f"FSDD (every {FSDD_STEP}th of {len(fsdd)})": fsdd[::FSDD_STEP]}


def _arcompress(*args: str) -> float:
    """Run ``python -m arcompress ARGS`` in a new process; its wall-clock seconds."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "arcompress", *args], check=True)
    return time.perf_counter() - t


def round_trip(paths: list[Path], work: Path) -> dict:
    """Copy ``paths`` into ``work``, encode them all in one CLI call, move the .arc files to a
    second folder, decode them all in one call there and compare each result with its source."""
    src, out = work / "in", work / "out"
    src.mkdir(parents=True)
    out.mkdir()
    for p in paths:
        shutil.copy(p, src / p.name)
    encode_s = _arcompress("encode", "-q", *(str(src / p.name) for p in paths))
    for p in paths:
        (src / f"{p.name}.arc").rename(out / f"{p.name}.arc")
    decode_s = _arcompress("decode", "-q", *(str(out / f"{p.name}.arc") for p in paths))
    files = []
    for p in paths:
        with sf.SoundFile(p) as a, sf.SoundFile(out / p.name) as b:
            want, got = a.read(dtype="int32", always_2d=True), b.read(dtype="int32", always_2d=True)
            same_format = (a.samplerate, a.channels, a.subtype, a.copy_metadata()) == \
                (b.samplerate, b.channels, b.subtype, b.copy_metadata())
        native = read_audio(p)
        files.append({"file": p.name, "rate": native.info.rate, "channels": native.info.channels,
                      "subtype": native.info.subtype,
                      "samples": int(want.size), "arc_bytes": (out / f"{p.name}.arc").stat().st_size,
                      "flac8_bytes": flac_bytes(native.samples, native.info),
                      "exact": bool(same_format and np.array_equal(want, got))})
    return {"files": files, "encode_s": encode_s, "decode_s": decode_s}


def run(quick: bool, command: str, partial: Path | None = None, log=print) -> dict:
    """Round-trip every set; resumes from ``partial`` (sets already done are kept) when it was
    written with the same models and .arc format version, else measures every set again."""
    results = {"command": command, "date": today(), "machine": machine(), "quick": quick,
               "format_version": container.FORMAT_VERSION, "sets": {}}
    if partial is not None and partial.exists():
        old = json.loads(partial.read_text())
        same = [old.get(k) == results[k] for k in ("quick", "format_version")]
        if all(same) and old.get("machine", {}).get("models") == results["machine"]["models"]:
            log(f"resuming from {partial}")
            results = old
    for name, paths in sets(quick).items():
        if name in results["sets"]:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            results["sets"][name] = round_trip(paths, Path(tmp))
        if partial is not None:
            partial.write_text(json.dumps(results, indent=1))
        r = results["sets"][name]
        log(f"{name}: {sum(f['exact'] for f in r['files'])} of {len(r['files'])} exact, "
            f"encode {r['encode_s']:.0f} s, decode {r['decode_s']:.0f} s")
    return results


def summarize(results: dict) -> str:
    m = results["machine"]
    lines = [f"Run: `{results['command']}` on {results['date']}; CPU {m['cpu']}, {m['cores']} threads, "
             f"GPU {m['gpu'] or 'none'}; torch {m['torch']}; arcompress {m['arcompress']}, .arc format "
             f"{results.get('format_version', '?')}.", "",
             "| set | files | samples | identical (samples, rate, channels, subtype, tags) | arcompress bits/sample "
             "| FLAC -8 bits/sample | CLI encode s | CLI decode s | decode samples/s |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for name, r in results["sets"].items():
        f = r["files"]
        n = sum(x["samples"] for x in f)
        exact = sum(x["exact"] for x in f)
        lines.append(f"| {name} | {len(f)} | {n} | {'all' if exact == len(f) else f'{exact} of {len(f)}'} | "
                     f"{8 * sum(x['arc_bytes'] for x in f) / n:.3f} | {8 * sum(x['flac8_bytes'] for x in f) / n:.3f} | "
                     f"{r['encode_s']:.0f} | {r['decode_s']:.0f} | {n / r['decode_s']:.0f} |")
    bad = [x["file"] for r in results["sets"].values() for x in r["files"] if not x["exact"]]
    lines += ["", "Files that differ: " + (", ".join(bad) if bad else "none") + "."]
    return "\n".join(lines) + "\n"
