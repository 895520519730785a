"""``arcompress train`` on audio: fit a WaveNet to a folder of recordings, then convert it.

Training examples are random excerpts ("crops") of ``crop`` samples of one channel, each
starting with no past, exactly like a coded chunk; for a multi-channel file the excerpt of
channel c > 0 comes with channel c-1 as its reference, and each excerpt gets the linear
predictor the encoder would choose for it (audio_head.choose_lpc).  Whole files are held out for
validation (the last ones by path, or ``val_dir``).  Adam, with a checkpoint every
``checkpoint_every`` steps that a rerun resumes from.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .audio_head import choose_lpc, nll_bits, residual
from .audiofile import AUDIO_SUFFIXES, read_audio
from .train import WeightAverage, averaged, init_from, load_checkpoint, run_steps, write_checkpoint
from .wavenet import WaveNet, WaveNetConfig, embed_float, rate_feature


@dataclass
class AudioTrainOptions:
    steps: int = 2000
    batch: int = 8
    crop: int = 4096
    lr: float = 1e-3
    lr_decay: float = 0.998  # learning rate = lr * lr_decay ** (step / 10)
    val_files: int = 0  # 0: about 10 % of the files, at least 1
    val_crops: int = 64
    checkpoint_every: int = 200
    seed: int = 0
    threads: int = 0
    average: float = 0.0  # decay of the Polyak weight average (see train.WeightAverage); 0: off


@dataclass
class Track:
    """One training recording: samples (channels, frames) int16 and its rate."""

    samples: np.ndarray
    rate: int
    name: str


def list_audio(folder: str | os.PathLike) -> list[Path]:
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) in {folder}")
    return files


def load_tracks(files: list[Path], min_frames: int = 64) -> list[Track]:
    """Read recordings as int16 (24-bit files: their top 16 bits, as the codec models them)."""
    out = []
    for f in files:
        a = read_audio(f)
        s = a.model_samples().T.copy()  # (channels, frames)
        if s.shape[1] >= min_frames:
            out.append(Track(s, a.rate, str(f)))
    return out


def random_crops(tracks: list[Track], n: int, size: int, rng: np.random.Generator):
    """n excerpts: samples (n, size) int16, ref (n, size) int16, has_ref (n,), rate feature (n,).

    Files are drawn in proportion to their length (frames x channels); excerpts shorter than
    ``size`` are zero-padded and masked.
    """
    w = np.array([t.samples.size for t in tracks], np.float64)
    idx = rng.choice(len(tracks), size=n, p=w / w.sum())
    x = np.zeros((n, size), np.int16)
    r = np.zeros((n, size), np.int16)
    mask = np.zeros((n, size), bool)
    has_ref = np.zeros(n, bool)
    rate = np.zeros(n, np.int64)
    for k, i in enumerate(idx):
        t = tracks[i]
        ch, frames = t.samples.shape
        c = int(rng.integers(0, ch))
        start = int(rng.integers(0, max(1, frames - size + 1)))
        seg = t.samples[c, start:start + size]
        x[k, :len(seg)] = seg
        mask[k, :len(seg)] = True
        if c > 0:
            r[k, :len(seg)] = t.samples[c - 1, start:start + size]
            has_ref[k] = True
        rate[k] = rate_feature(t.rate)
    return (torch.from_numpy(x), torch.from_numpy(r), torch.from_numpy(has_ref),
            torch.from_numpy(rate), torch.from_numpy(mask))


def batch_nll(model: WaveNet, crops) -> torch.Tensor:
    """Float NLL (bits per sample) of a batch from :func:`random_crops`."""
    x, r, has_ref, rate, mask = crops
    lengths, cfg = mask.sum(1), model.cfg
    lpc = choose_lpc(x, lengths, r, has_ref, cfg.lpc_cross)  # as the encoder (audio_codec.encoder_predictor)
    ref_pred = choose_lpc(r, lengths).float_prediction(r)
    resid = residual(x, lpc.exact_prediction(x, r))
    params = model(embed_float(x, resid, r, has_ref, rate))
    return nll_bits(params, x, lpc.float_prediction(x, r), r, ref_pred, mask)


def evaluate(model: WaveNet, crops, batch: int = 16) -> float:
    model.eval()
    n = crops[0].shape[0]
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, n, batch):
            part = tuple(c[i:i + batch] for c in crops)
            m = int(part[4].sum())
            total += float(batch_nll(model, part)) * m
            count += m
    model.train()
    return total / max(count, 1)


def train_audio(audio_dir: str, output: str, cfg: WaveNetConfig, opts: AudioTrainOptions,
                checkpoint: str | None = None, val_dir: str | None = None, description: str = "",
                log=print, init: str | None = None) -> dict:
    """Train (or resume) a WaveNet and write the exact model file to ``output``; ``init``: a
    model whose float weights start a new run (train.init_from)."""
    from .zoo import save_model

    if opts.threads:
        torch.set_num_threads(opts.threads)
    files = list_audio(audio_dir)
    if val_dir:
        train_files, val_files = files, list_audio(val_dir)
    else:
        if len(files) < 2:
            raise ValueError("need at least 2 audio files: some to train on, one held out for validation")
        n_val = min(opts.val_files or max(1, len(files) // 10), len(files) - 1)
        train_files, val_files = files[:-n_val], files[-n_val:]
    tracks, val_tracks = load_tracks(train_files), load_tracks(val_files)
    if not tracks or not val_tracks:
        raise ValueError("the training and validation files must hold at least 64 samples each")
    val_crops = random_crops(val_tracks, opts.val_crops, opts.crop, np.random.default_rng(12345))

    torch.manual_seed(opts.seed)
    model = WaveNet(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=opts.lr)
    ckpt = Path(checkpoint) if checkpoint else Path(output).with_suffix(".ckpt.safetensors")
    average = WeightAverage(model, opts.average) if opts.average else None
    step, history = load_checkpoint(ckpt, cfg, model, opt, log, average)
    if step == 0 and init:
        init_from(model, init, log)
        if average:
            average.reset(model)
    rng = np.random.default_rng(opts.seed + step)

    step = run_steps(model, opt, opts, step, history,
                     loss=lambda: batch_nll(model, random_crops(tracks, opts.batch, opts.crop, rng)),
                     validate=lambda: evaluate(model, val_crops),
                     save=lambda at: write_checkpoint(ckpt, cfg, model, opt, at, history, average),
                     key="bits", unit="bits/sample", average=average)
    with averaged(model, average):
        val = evaluate(model, val_crops)
    meta = {
        "name": Path(output).stem,
        "trained_on": description or f"{len(train_files)} audio files from {audio_dir}",
        "validation": f"{len(val_files)} held-out whole files",
        "val_bits_per_sample_float": f"{val:.4f}",
        "steps": str(step),
        "initialised_from": init or "",
        "train_options": json.dumps(opts.__dict__),
        "history": json.dumps(history),
    }
    with averaged(model, average):
        save_model(output, model, meta)
    return {"val_bits": val, "steps": step, "history": history}
