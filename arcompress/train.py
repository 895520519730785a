"""``arcompress train``: fit a PixelCNN++ to a folder of images, then convert it to an exact model.

Random square crops of the training images (whole images held out for validation), Adam with
an exponentially decaying learning rate, optionally a Polyak (exponential moving) average of the
weights that is validated and shipped instead of the last iterate, a checkpoint every
``checkpoint_every`` steps that a later run resumes from (training can run in pieces), and at
the end the exact conversion, written as a model file that ``--model PATH`` accepts.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from .head import nll_bits
from .pixelcnn import PixelCNN, PixelCNNConfig
from . import zoo
from .zoo import save_model

IMAGE_SUFFIXES = {".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class TrainOptions:
    steps: int = 2000
    batch: int = 16
    crop: int = 32
    lr: float = 2e-3
    lr_decay: float = 0.998  # learning rate = lr * lr_decay ** (step / 10)
    val_images: int = 0  # 0: about 10 % of the images, at least 1
    val_crops: int = 16  # crops per held-out image for the validation bpd
    checkpoint_every: int = 200
    seed: int = 0
    threads: int = 0  # 0: torch default
    average: float = 0.0  # decay of the Polyak weight average (e.g. 0.999); 0: ship the last iterate
    noise: float = 0.0  # half the crops get Gaussian noise of a std drawn from U(0, noise) levels; 0: none


def list_images(folder: str | os.PathLike) -> list[Path]:
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return files


def load_training_images(files: list[Path], channels: int, min_size: int) -> list[np.ndarray]:
    """Read images as (C, H, W) uint8 arrays: grey for channels=1, RGB for channels=3."""
    from PIL import Image

    out = []
    for f in files:
        with Image.open(f) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            a = np.asarray(im, dtype=np.uint8)
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        if min(a.shape[1:]) >= min_size:
            out.append(np.ascontiguousarray(a))
    return out


def random_crops(images: list[np.ndarray], n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """n random crops (n, C, size, size), uniform over images weighted by area, random h-flip."""
    areas = np.array([a.shape[1] * a.shape[2] for a in images], dtype=np.float64)
    idx = rng.choice(len(images), size=n, p=areas / areas.sum())
    crops = []
    for i in idx:
        a = images[i]
        y = rng.integers(0, a.shape[1] - size + 1)
        x = rng.integers(0, a.shape[2] - size + 1)
        c = a[:, y:y + size, x:x + size]
        crops.append(c[:, :, ::-1] if rng.random() < 0.5 else c)
    return torch.from_numpy(np.ascontiguousarray(np.stack(crops)))


def add_noise(crops: torch.Tensor, max_sigma: float, rng: np.random.Generator) -> torch.Tensor:
    """Sensor-like noise on half of the crops (N, C, S, S) uint8: each chosen crop gets i.i.d.
    Gaussian noise of a standard deviation drawn uniformly from [0, max_sigma] levels, rounded and
    clipped to 0..255; the other half are returned unchanged.

    The training photos are downsampled JPEGs, smoother than scans or raw camera data; without
    this a model learns that a pixel is never far from its neighbours and is overconfident on
    grainy images (the per-tile scale offsets then have to undo it)."""
    if max_sigma <= 0:
        return crops
    n = crops.shape[0]
    chosen = rng.random(n) < 0.5
    sigma = np.where(chosen, rng.uniform(0.0, max_sigma, n), 0.0)
    noise = rng.standard_normal(tuple(crops.shape)) * sigma[:, None, None, None]
    noisy = np.clip(np.rint(crops.numpy().astype(np.float64) + noise), 0, 255).astype(np.uint8)
    return torch.from_numpy(noisy)


class WeightAverage:
    """A Polyak average of a model's floating-point state: after each step t (counted from the
    average's start), ``avg += (1 - d_t) * (weights - avg)`` with ``d_t = min(decay, (1 + t) / (10 + t))``,
    so the first steps are not dominated by the starting weights.  Its weights are what
    validation measures and what the model file gets (:meth:`swapped_in`)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"weight-average decay must be in (0, 1), not {decay}")
        self.decay = decay
        self.reset(model)

    def reset(self, model: torch.nn.Module) -> None:
        """Start the average afresh from ``model``'s current weights."""
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        state = model.state_dict()
        for k, v in self.shadow.items():
            v.lerp_(state[k].detach(), 1.0 - d)
        self.updates += 1

    @contextmanager
    def swapped_in(self, model: torch.nn.Module):
        """Within the block, ``model`` holds the averaged weights; its own come back after."""
        own = {k: v.detach().clone() for k, v in model.state_dict().items() if k in self.shadow}
        model.load_state_dict(self.shadow, strict=False)
        try:
            yield model
        finally:
            model.load_state_dict(own, strict=False)

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {f"average.{k}": v.contiguous() for k, v in self.shadow.items()}
        out["average_updates"] = torch.tensor([float(self.updates)])
        return out

    def restore(self, tensors: dict[str, torch.Tensor]) -> bool:
        """Take the average from checkpoint tensors; False if the checkpoint has none."""
        if "average_updates" not in tensors:
            return False
        for k in self.shadow:
            self.shadow[k] = tensors[f"average.{k}"].clone()
        self.updates = int(tensors["average_updates"][0])
        return True


@contextmanager
def averaged(model: torch.nn.Module, average: WeightAverage | None):
    """``model`` with the averaged weights swapped in, or as it is when there is no average."""
    if average is None:
        yield model
    else:
        with average.swapped_in(model):
            yield model


def _state_tensors(model: PixelCNN, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    for i, p in enumerate(model.parameters()):
        st = opt.state.get(p)
        if st:
            out[f"adam.{i}.exp_avg"] = st["exp_avg"].contiguous()
            out[f"adam.{i}.exp_avg_sq"] = st["exp_avg_sq"].contiguous()
            out[f"adam.{i}.step"] = torch.as_tensor(st["step"]).reshape(1).float()
    return out


def _restore(model: PixelCNN, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    for i, p in enumerate(model.parameters()):
        if f"adam.{i}.exp_avg" in tensors:
            opt.state[p] = {"exp_avg": tensors[f"adam.{i}.exp_avg"].clone(),
                            "exp_avg_sq": tensors[f"adam.{i}.exp_avg_sq"].clone(),
                            "step": tensors[f"adam.{i}.step"].reshape(()).clone()}


def load_checkpoint(ckpt: Path, cfg, model, opt, log, average: WeightAverage | None = None) -> tuple[int, list]:
    """Restore model, optimizer and weight average from ``ckpt`` if it exists: (step, history),
    else (0, []).  A checkpoint without an average starts ``average`` from the restored weights."""
    if not ckpt.exists():
        return 0, []
    tensors = load_file(str(ckpt))
    with open(ckpt, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        meta = json.loads(f.read(n))["__metadata__"]
    if json.loads(meta["config"]) != cfg.to_dict():
        raise ValueError(f"checkpoint {ckpt} was made with another model config; delete it or match it")
    _restore(model, opt, tensors)
    if average is not None and not average.restore(tensors):
        average.reset(model)
    step = int(meta["step"])
    log(f"resumed from {ckpt} at step {step}")
    return step, json.loads(meta["history"])


def write_checkpoint(ckpt: Path, cfg, model, opt, step: int, history: list,
                     average: WeightAverage | None = None) -> None:
    """Save model, optimizer, weight average, step and history atomically."""
    meta = {"config": json.dumps(cfg.to_dict()), "step": str(step), "history": json.dumps(history)}
    tmp = ckpt.with_name(ckpt.name + ".tmp")
    tensors = _state_tensors(model, opt)
    if average is not None:
        tensors.update(average.tensors())
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, ckpt)


def evaluate(model: PixelCNN, crops: torch.Tensor, batch: int = 32) -> float:
    """Mean float NLL (bits per sub-pixel) over crops (N, C, S, S)."""
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(crops), batch):
            x = crops[i:i + batch]
            total += float(nll_bits(model(x), x)) * len(x)
    model.train()
    return total / len(crops)


def init_from(model, spec: str, log=print) -> list[str]:
    """Copy the float weights of model ``spec`` (a shipped name or a file) into ``model``, layer by
    layer where name and shape match (e.g. PixelSNAIL from a PixelCNN++ of the same size): the
    names copied."""
    source = zoo.resolve(spec).float_model()
    if source is None:
        raise ValueError(f"model {spec} carries no float weights to start from")
    theirs, ours = source.float_state(), model.float_state()
    same = {k: v for k, v in theirs.items() if k in ours and ours[k].shape == v.shape}
    if not same:
        raise ValueError(f"model {spec} shares no layer with this architecture")
    model.load_float_state({**ours, **same})
    log(f"started from {spec}: {len(same)} of {len(ours)} weight tensors copied")
    return sorted(same)


def run_steps(model, opt: torch.optim.Optimizer, opts, step: int, history: list, loss, validate, save,
              key: str, unit: str, average: WeightAverage | None = None) -> int:
    """The optimisation loop shared by image and audio training, from ``step`` to ``opts.steps``.

    ``loss()``: the loss of a fresh training batch; ``validate()``: the validation loss; every
    ``opts.checkpoint_every`` steps (and at the end) the losses are appended to ``history``
    (``train_<key>``, ``val_<key>``) and ``save(step)`` writes the checkpoint.  Returns the step
    reached.  The learning rate is ``opts.lr * opts.lr_decay ** (step / 10)``.  With an ``average``,
    it is updated after every step and validation measures the averaged weights."""
    model.train()
    t0 = time.time()
    bar = tqdm(total=opts.steps, initial=step, desc="training", unit="step", disable=None)
    ema = None
    while step < opts.steps:
        for g in opt.param_groups:
            g["lr"] = opts.lr * opts.lr_decay ** (step / 10)
        value = loss()
        opt.zero_grad(set_to_none=True)
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        if average is not None:
            average.update(model)
        step += 1
        lv = float(value.detach())
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        bar.update(1)
        bar.set_postfix({key: f"{ema:.3f}"})
        if step % opts.checkpoint_every == 0 or step == opts.steps:
            with averaged(model, average):
                val = validate()
            history.append({"step": step, f"train_{key}": round(ema, 4), f"val_{key}": round(val, 4),
                            "seconds": round(time.time() - t0, 1)})
            bar.write(f"step {step}: train {ema:.4f} val {val:.4f} {unit}")
            save(step)
    bar.close()
    return step


def train(images_dir: str, output: str, cfg: PixelCNNConfig, opts: TrainOptions,
          checkpoint: str | None = None, description: str = "", log=print, init: str | None = None) -> dict:
    """Train (or resume) and write the exact model file to ``output``. Returns a summary dict.

    ``init``: a model whose float weights start a new run (see :func:`init_from`); a checkpoint,
    if there is one, takes precedence."""
    if opts.threads:
        torch.set_num_threads(opts.threads)
    files = list_images(images_dir)
    n_val = opts.val_images or max(1, len(files) // 10)
    if len(files) < 2:
        raise ValueError("need at least 2 images: one or more to train on, one held out for validation")
    n_val = min(n_val, len(files) - 1)
    train_files, val_files = files[:-n_val], files[-n_val:]
    train_imgs = load_training_images(train_files, cfg.channels, opts.crop)
    val_imgs = load_training_images(val_files, cfg.channels, opts.crop)
    if not train_imgs or not val_imgs:
        raise ValueError(f"images must be at least {opts.crop}x{opts.crop} pixels")
    val_crops = random_crops(val_imgs, opts.val_crops * len(val_imgs), opts.crop,
                             np.random.default_rng(12345))

    torch.manual_seed(opts.seed)
    model = zoo.model_class(cfg)(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=opts.lr)
    ckpt = Path(checkpoint) if checkpoint else Path(output).with_suffix(".ckpt.safetensors")
    average = WeightAverage(model, opts.average) if opts.average else None
    step, history = load_checkpoint(ckpt, cfg, model, opt, log, average)
    if step == 0 and init:
        init_from(model, init, log)
        if average is not None:
            average.reset(model)
    rng = np.random.default_rng(opts.seed + step)

    def loss() -> torch.Tensor:
        x = add_noise(random_crops(train_imgs, opts.batch, opts.crop, rng), opts.noise, rng)
        return nll_bits(model(x), x)

    step = run_steps(model, opt, opts, step, history, loss=loss,
                     validate=lambda: evaluate(model, val_crops),
                     save=lambda at: write_checkpoint(ckpt, cfg, model, opt, at, history, average),
                     key="bpsp", unit="bits/sub-pixel", average=average)
    with averaged(model, average):
        val = evaluate(model, val_crops)
    meta = {
        "name": Path(output).stem,
        "trained_on": description or f"{len(train_files)} images from {images_dir}",
        "validation": f"{len(val_files)} held-out whole images: {', '.join(f.name for f in val_files)}",
        "val_bpsp_float": f"{val:.4f}",
        "steps": str(step),
        "train_options": json.dumps(opts.__dict__),
        "initialised_from": init or "",
        "history": json.dumps(history),
    }
    with averaged(model, average):
        save_model(output, model, meta)
    return {"val_bpsp": val, "steps": step, "history": history}

