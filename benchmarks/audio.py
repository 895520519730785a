"""Audio benchmark: bits written vs exact NLL vs float NLL vs FLAC -8 and WavPack -hh, and speed.

Evaluation data (never trained on):

* **8 kHz speech**: the Italian Asterisk prompts (Debian ``asterisk-core-sounds-it-wav``; a male
  speaker, reserved for evaluation by ../shared/data/README.md) and FSDD speaker ``theo``
  (left out of the shipped model's training).
* **music**: the Sonic Pi ``loop_``, ``guit_`` and ``arovane_`` samples (npm
  ``supersonic-scsynth-samples@0.84.2``, reserved for evaluation), 44.1 kHz mono and stereo.
* wideband speech: none is available here (see README).

``python -m benchmarks fetch-audio`` downloads the two packages (apt-get download, npm pack)
into ``benchmarks/data`` (git-ignored).  The full run takes every 40th Italian prompt, every 50th
``theo`` file and every 6th Sonic Pi sample, and cuts recordings to their first
``EXCERPT_SECONDS``: decoding runs at thousands of samples per second on a 2-core CPU.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from arcompress import audio_codec, container, zoo
from arcompress.audio_head import chunk_lpc, nll_bits, residual
from arcompress.audiofile import AudioInfo, read_audio, to_model
from arcompress.wavenet import embed_float, rate_feature

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "audio" / "train"
DATA = Path(__file__).resolve().parent / "data"
RESULTS = Path(__file__).resolve().parent / "results"
EXCERPT_SECONDS = 5.0
#: excerpt length of the quick (smoke) run
QUICK_SECONDS = 2.0


def unpack_deb(package: str, tmp: str) -> Path:
    """``apt-get download`` a Debian package into ``tmp`` and unpack it (no root): its root folder."""
    subprocess.run(["apt-get", "download", package], cwd=tmp, check=True)
    deb = next(Path(tmp).glob(f"{package}_*.deb"))
    root = Path(tmp) / package
    subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    return root


def fetch(log=print) -> None:
    """Download the evaluation sets into benchmarks/data (needs apt-get and npm; no root)."""
    DATA.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = unpack_deb("asterisk-core-sounds-it-wav", tmp)
        out = DATA / "asterisk-it"
        out.mkdir(exist_ok=True)
        for f in sorted(root.rglob("*.wav")):
            shutil.copy(f, out / f"{f.parent.name}__{f.name}")
        subprocess.run(["npm", "pack", "supersonic-scsynth-samples@0.84.2"], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        tgz = next(Path(tmp).glob("supersonic-scsynth-samples-*.tgz"))
        subprocess.run(["tar", "xzf", str(tgz), "-C", tmp], check=True)
        out = DATA / "sonic-pi-eval"
        out.mkdir(exist_ok=True)
        for f in sorted((Path(tmp) / "package").rglob("*.flac")):
            if f.name.startswith(("loop_", "guit_", "arovane_")):
                shutil.copy(f, out / f.name)
    log(f"evaluation audio in {DATA}")


def eval_sets(quick: bool) -> dict[str, list[Path]]:
    """group -> files.  Quick: a handful per group."""
    it = sorted((DATA / "asterisk-it").glob("*.wav"))
    theo = sorted(SHARED.glob("fsdd/*_theo_*.flac"))
    music = sorted((DATA / "sonic-pi-eval").glob("*.flac"))
    if not it or not music:
        raise SystemExit("evaluation audio missing: run 'python -m benchmarks fetch-audio' first")
    if quick:
        return {"8 kHz speech": it[::400] + theo[:1], "music": music[:1]}
    return {"8 kHz speech": it[::40] + theo[::50], "music": music[::6]}


def excerpt(path: Path, seconds: float = EXCERPT_SECONDS) -> tuple[np.ndarray, AudioInfo]:
    a = read_audio(path)
    n = min(len(a.samples), int(seconds * a.info.rate))
    info = AudioInfo(a.info.rate, a.info.channels, n, a.info.bits, a.info.format, a.info.subtype)
    return a.samples[:n], info


# ----------------------------------------------------------------------------- classical codecs

def flac_bytes(native: np.ndarray, info: AudioInfo) -> int:
    """FLAC at libsndfile's strongest setting (compression level 1.0 = flac -8)."""
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", info.rate, info.channels, info.subtype, format="FLAC",
                      compression_level=1.0) as f:
        f.write(native << (32 - info.bits))
    data = buf.getvalue()
    back, _ = sf.read(io.BytesIO(data), dtype="int32", always_2d=True)
    assert np.array_equal(back >> (32 - info.bits), native), "FLAC round trip failed"
    return len(data)


def wavpack_bytes(native: np.ndarray, info: AudioInfo) -> int | None:
    """WavPack -hh (Debian wavpack), None if the tool is missing."""
    exe = shutil.which("wavpack")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "x.wav"
        sub = "PCM_U8" if info.bits == 8 else info.subtype
        sf.write(wav, native << (32 - info.bits), info.rate, subtype=sub)
        subprocess.run([exe, "-hh", "-q", "-y", str(wav), "-o", str(Path(tmp) / "x.wv")], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return (Path(tmp) / "x.wv").stat().st_size


def ffmpeg_bytes(native: np.ndarray, info: AudioInfo, codec: str) -> int | None:
    """ffmpeg's TTA (``tta``, .tta) or ALAC (``alac``, .m4a) at its strongest setting, checked
    lossless by decoding; None if ffmpeg is missing or cannot code this input."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        return None
    suffix = {"tta": ".tta", "alac": ".m4a"}[codec]
    extra = ["-compression_level", "2"] if codec == "alac" else []  # alac: 2 = most search
    raw_fmt = {8: "u8", 16: "s16le", 24: "s32le"}[info.bits]
    with tempfile.TemporaryDirectory() as tmp:
        wav, out, back = Path(tmp) / "x.wav", Path(tmp) / ("x" + suffix), Path(tmp) / "y.raw"
        sf.write(wav, native << (32 - info.bits), info.rate, subtype="PCM_U8" if info.bits == 8 else info.subtype)
        quiet = [exe, "-nostdin", "-v", "error", "-y"]
        r = subprocess.run(quiet + ["-i", str(wav), "-c:a", codec, *extra, str(out)], capture_output=True)
        if r.returncode != 0:
            return None
        subprocess.run(quiet + ["-i", str(out), "-f", raw_fmt, str(back)], check=True, capture_output=True)
        got = np.frombuffer(back.read_bytes(), {8: np.uint8, 16: "<i2", 24: "<i4"}[info.bits]).astype(np.int64)
        want = native.astype(np.int64).reshape(-1)
        if info.bits == 8:
            got = got - 128
        elif info.bits == 24:
            got = got >> 8
        if not np.array_equal(got, want):
            raise RuntimeError(f"ffmpeg {codec} was not lossless")
        return out.stat().st_size


#: classical audio codecs: result key -> bytes(native, info) (None: tool missing)
CLASSICAL = {"FLAC-8": flac_bytes, "WavPack-hh": wavpack_bytes,
             "TTA": lambda n, i: ffmpeg_bytes(n, i, "tta"), "ALAC": lambda n, i: ffmpeg_bytes(n, i, "alac")}


# ----------------------------------------------------------------------------- arcompress

def float_nll(model: zoo.ExactModel, native: np.ndarray, info: AudioInfo, chunk: int) -> float:
    """The float model's NLL (bits) of the same chunks the codec codes, every channel after the
    first using the one before it (stream mode 0: the network's own figure, before the
    encoder's choice of modes, audio_modes.py)."""
    fm, cfg = model.float_model(), model.config
    lay = audio_codec._Layout(len(native), info.channels, chunk)
    m = lay.streams(to_model(native, info.bits))
    ref = lay.refs(m)
    lpc = audio_codec.encoder_predictor(m, lay.lengths(), cfg, ref, lay.has_ref)
    pred = lpc.float_prediction(m, ref)
    ref_pred = torch.roll(pred, 1, 0) * lay.has_ref.view(-1, 1)
    resid = residual(m, lpc.exact_prediction(m, ref))
    total = 0.0
    with torch.no_grad():
        for s in range(0, m.shape[0], 32):
            x, r, h = m[s:s + 32], ref[s:s + 32], lay.has_ref[s:s + 32]
            rate = torch.full((len(x),), rate_feature(info.rate))
            mask = lay.inside.repeat_interleave(info.channels, 0)[s:s + 32]
            params = fm(embed_float(x, resid[s:s + 32], r, h, rate))
            total += float(nll_bits(params, x, pred[s:s + 32], r, ref_pred[s:s + 32], mask)) * int(mask.sum())
    extra = 8 * info.frames * info.channels if info.bits == 24 else 0
    return total + extra + 8 * len(audio_codec.pack_predictors(lpc, lay.has_ref))  # as in the exact NLL


def code(model, native, info, chunk, decode: bool, workers: int | None = None) -> dict:
    t = time.time()
    parts = list(audio_codec.encode_stream(model, info, lambda: iter([native]), chunk=chunk))
    t_enc = time.time() - t
    stats = parts.pop()
    data = b"".join(parts)
    row = {"bytes": len(data), "nll_bits": stats.nll_bits, "encode_s": t_enc}
    if decode:
        t = time.time()
        gen = audio_codec.decode_stream(container.audio_reader(data), lambda n, d: model, workers=workers)
        next(gen)
        blocks = list(gen)
        row["decode_s"] = time.time() - t
        back = np.concatenate(blocks) if blocks else native[:0]
        row["exact"] = bool(np.array_equal(back, native))
    return row, data


def cli_round_trip(path: Path, native: np.ndarray, info: AudioInfo, workdir: Path) -> bool:
    """Encode and decode through ``python -m arcompress`` in new processes; compare samples."""
    src = workdir / ("x" + path.suffix.lower())
    sf.write(src, native << (32 - info.bits), info.rate, subtype=info.subtype if info.bits > 8 or
             path.suffix.lower() != ".wav" else "PCM_U8")
    for args in (["encode", "-q", "--force", str(src)], ["decode", "-q", "--force", f"{src}.arc", "-o",
                                                          str(workdir / ("y" + path.suffix.lower()))]):
        subprocess.run([sys.executable, "-m", "arcompress", *args], check=True)
    back, rate = sf.read(workdir / ("y" + path.suffix.lower()), dtype="int32", always_2d=True)
    return rate == info.rate and bool(np.array_equal(back >> (32 - info.bits), native))


def chunk_tradeoff(model, files: list[Path], chunks=(256, 1024, 4096), seconds: float = 2.0) -> list[dict]:
    """Bits and decoding speed of the same excerpts at several chunk sizes (one process)."""
    rows = []
    clips = [excerpt(f, seconds) for f in files]
    for chunk in chunks:
        bits = samples = 0
        dec = 0.0
        for native, info in clips:
            row, _ = code(model, native, info, chunk, decode=True, workers=1)
            assert row["exact"]
            bits += row["bytes"] * 8
            samples += native.size
            dec += row["decode_s"]
        rows.append({"chunk": chunk, "bits_per_sample": bits / samples, "decode_samples_per_s": samples / dec})
    return rows


def cached_vs_naive(model, frames: int = 256) -> dict:
    """One stream decoded step by step (queues) vs a full forward pass per step, identical params."""
    from arcompress.wavenet import CachedDecoder, embed_fixed, embed_step, forward

    ops = model.ops
    native, info = excerpt(sorted((DATA / "sonic-pi-eval").glob("*.flac"))[0])
    x = torch.from_numpy(to_model(native[:frames, :1], info.bits).T.copy())
    zeros, no = torch.zeros_like(x), torch.zeros(1, dtype=torch.bool)
    mulaw = ops.tables["mulaw"]
    resid = residual(x, chunk_lpc(x, torch.tensor([frames]), model.config.lpc).exact_prediction(x))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t = time.time()
        cache = CachedDecoder(ops, 1)
        cached = []
        for s in range(frames):
            prev = x[:, s - 1] if s else torch.zeros(1, dtype=torch.int64)
            eprev = resid[:, s - 1] if s else torch.zeros(1, dtype=torch.int64)
            cached.append(cache.step(embed_step(prev, eprev, prev * 0, no, info.rate, s, mulaw)))
        t_cached = time.time() - t
        t = time.time()
        naive = []
        for s in range(frames):
            emb = embed_fixed(x[:, :s + 1], resid[:, :s + 1], zeros[:, :s + 1], no, info.rate, mulaw)
            naive.append(forward(ops, emb)[:, :, -1])
        t_naive = time.time() - t
    finally:
        torch.set_num_threads(n)
    same = all(torch.equal(a, b) for a, b in zip(cached, naive))
    return {"frames": frames, "cached_s": t_cached, "naive_s": t_naive, "speedup": t_naive / t_cached,
            "identical": same}


def _tool_version(tool: str, flag: str) -> str | None:
    """First line of ``tool flag`` (e.g. ``wavpack --version``), None if the tool is missing."""
    exe = shutil.which(tool)
    if exe is None:
        return None
    out = subprocess.run([exe, flag], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else None


def update(results: dict, quick: bool, command: str, log=print) -> dict:
    """Add the classical codecs missing from saved rows (same excerpts); nothing else is re-measured."""
    paths = {p.name: p for files in eval_sets(quick).values() for p in files}
    added = set()
    for row in results["files"]:
        missing = [k for k in CLASSICAL if row.get(k) is None]
        if missing:
            native, info = excerpt(paths[row["file"]], results.get("excerpt_seconds", EXCERPT_SECONDS))
            row.update({k: CLASSICAL[k](native, info) for k in missing})
            added.update(missing)
            log(f"{row['file']}: added {', '.join(missing)}")
    if added:
        results["machine"]["ffmpeg"] = _tool_version("ffmpeg", "-version")
        results.setdefault("updates", []).append({"command": command, "date": time.strftime("%Y-%m-%d"),
                                                  "added": sorted(added)})
    return results


def run(quick: bool, command: str, log=print) -> dict:
    from .images import machine

    model = zoo.resolve(zoo.AUDIO_DEFAULT)  # the chunk and cached-vs-naive measurements
    sets = eval_sets(quick)
    import datetime

    results = {"command": command, "machine": {**machine(), "soundfile": sf.__version__,
                                               "libsndfile": sf.__libsndfile_version__,
                                               "wavpack": _tool_version("wavpack", "--version"), "ffmpeg": _tool_version("ffmpeg", "-version")},
               "date": datetime.date.today().isoformat(), "model": model.name,
               "model_sha256": model.digest.hex(), "trained_on": model.metadata.get("trained_on", ""),
               "models": {},  # name -> SHA-256 of every model that coded a file (zoo.audio_default)
               "excerpt_seconds": QUICK_SECONDS if quick else EXCERPT_SECONDS, "chunk": [list(b) for b in audio_codec.RATE_CHUNKS],
               "group": audio_codec.DEFAULT_GROUP, "files": []}
    with tempfile.TemporaryDirectory() as tmp:
        for group, files in sets.items():
            for k, path in enumerate(files):
                native, info = excerpt(path, QUICK_SECONDS if quick else EXCERPT_SECONDS)
                coder = zoo.resolve(zoo.audio_default(info.rate))  # what `arcompress encode` uses
                results["models"][coder.name] = coder.digest.hex()
                chunk = audio_codec.default_chunk(info.rate)  # also what `arcompress encode` uses
                row, _ = code(coder, native, info, chunk, decode=True)
                row.update({"group": group, "file": path.name, "rate": info.rate, "channels": info.channels,
                            "bits": info.bits, "frames": info.frames, "samples": native.size, "model": coder.name,
                            "chunk": chunk, "float_nll_bits": float_nll(coder, native, info, chunk),
                            **{k: fn(native, info) for k, fn in CLASSICAL.items()}})
                if k % (1 if quick else 5) == 0:  # every 5th file also through the CLI, new processes
                    row["cli_exact"] = cli_round_trip(path, native, info, Path(tmp))
                results["files"].append(row)
                log(f"{group} {path.name}: {8 * row['bytes'] / row['samples']:.3f} bits/sample, "
                    f"FLAC {8 * row['FLAC-8'] / row['samples']:.3f}, exact {row['exact']}")
    music = sets["music"][: (1 if quick else 2)]
    results["chunks"] = chunk_tradeoff(model, music, (1024, 4096) if quick else (1024, 4096, 8192),
                                       seconds=0.5 if quick else 2.0)
    results["chunk_files"] = [f.name for f in music]
    results["chunk_seconds"] = 0.5 if quick else 2.0
    log(f"chunks: {results['chunks']}")
    speech = sets["8 kHz speech"][: (1 if quick else 2)]
    speech_model = zoo.resolve(zoo.audio_default(8000))
    results["speech_chunks"] = chunk_tradeoff(speech_model, speech, (1024, 2048) if quick else (1024, 2048, 4096),
                                              seconds=0.5 if quick else 5.0)
    results["speech_chunk_files"] = [f.name for f in speech]
    results["speech_chunk_seconds"] = 0.5 if quick else 5.0
    results["speech_chunk_model"] = speech_model.name
    log(f"speech chunks: {results['speech_chunks']}")
    results["cached_vs_naive"] = cached_vs_naive(model, 64 if quick else 256)
    log(f"cached vs naive: {results['cached_vs_naive']}")
    return results


def _chunk_table(title: str, rows: list[dict]) -> list[str]:
    """Markdown lines: a title and the rows of :func:`chunk_tradeoff`."""
    return [title, "", "| chunk (frames) | bits/sample | decode samples/s (1 process) |", "|---:|---:|---:|",
            *(f"| {c['chunk']} | {c['bits_per_sample']:.3f} | {c['decode_samples_per_s']:.0f} |" for c in rows)]


def summarize(results: dict) -> str:
    rows = results["files"]
    out = ["| group | files | samples | model | arcompress bits/sample | exact NLL | float NLL | written vs NLL "
           "| FLAC -8 | WavPack -hh | TTA | ALAC | vs FLAC | vs best classical | decode samples/s | exact |",
           "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for group in dict.fromkeys(r["group"] for r in rows):
        g = [r for r in rows if r["group"] == group]
        n = sum(r["samples"] for r in g)
        arc = sum(8 * r["bytes"] for r in g) / n
        nll = sum(r["nll_bits"] for r in g) / n
        fl = sum(r["float_nll_bits"] for r in g) / n
        cl = {k: (sum(8 * r[k] for r in g) / n if all(r.get(k) for r in g) else float("nan")) for k in CLASSICAL}
        best = min(v for v in cl.values() if v == v)
        dec = n / sum(r["decode_s"] for r in g)
        exact = all(r["exact"] for r in g) and all(r.get("cli_exact", True) for r in g)
        used = ", ".join(dict.fromkeys(r.get("model", results["model"]) for r in g))
        out.append(f"| {group} | {len(g)} | {n} | `{used}` | {arc:.3f} | {nll:.3f} | {fl:.3f} | "
                   f"{100 * (arc / nll - 1):+.2f} % | " + " | ".join(f"{cl[k]:.3f}" for k in CLASSICAL) +
                   f" | {100 * (arc / cl['FLAC-8'] - 1):+.1f} % | {100 * (arc / best - 1):+.1f} % | "
                   f"{dec:.0f} | {'yes' if exact else 'NO'} |")
    long = [r for r in rows if r["frames"] >= EXCERPT_SECONDS * r["rate"] - 1]
    if long:
        gaps = [100 * (8 * r["bytes"] / r["nll_bits"] - 1) for r in long]
        out.append("")
        out.append(f"Clips of {EXCERPT_SECONDS:.0f} s: bits written vs exact NLL (header included) "
                   f"{min(gaps):+.2f} % to {max(gaps):+.2f} % over {len(long)} clips.")
    out.append("")
    out += _chunk_table(f"Chunk size on music (first {results.get('chunk_seconds', 2.0):g} s of "
                        f"{', '.join(results.get('chunk_files', []))}):", results["chunks"])
    if results.get("speech_chunks"):
        out.append("")
        out += _chunk_table(f"Chunk size on 8 kHz speech (first {results['speech_chunk_seconds']:g} s of "
                            f"{', '.join(results['speech_chunk_files'])}, `{results['speech_chunk_model']}`):",
                            results["speech_chunks"])
    cv = results["cached_vs_naive"]
    out.append("")
    out.append(f"Cached vs naive decoding ({cv['frames']} steps of one stream, one thread): "
               f"{cv['cached_s']:.2f} s vs {cv['naive_s']:.2f} s = {cv['speedup']:.1f}x, "
               f"identical parameters: {cv['identical']}.")
    m = results["machine"]
    out.append("")
    out.append(f"Measured by `{results['command']}` on {m.get('cpu', '?')} ({m.get('cores', '?')} cores), "
               f"{results.get('date', '')}; " + ", ".join(f"{k} ({v[:12]})" for k, v in
                                                         results.get("models", {results["model"]: results["model_sha256"]}).items())
               + f"; music chunk sizes and cached vs naive with {results['model']}.")
    for u in results.get("updates", []):
        out.append(f"Codecs {', '.join(u['added'])} added to the same excerpts by `{u['command']}`, {u['date']} "
                   f"({m.get('ffmpeg') or 'ffmpeg'}).")
    return "\n".join(out) + "\n"
