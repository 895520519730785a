"""arcompress train: a short run on generated images, resume from checkpoint, usable model file."""

import json

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

import arcompress
from arcompress import zoo
from arcompress.cli import main

from conftest import natural_image


def _tiny_training_args(tmp_path, images: int, out) -> list[str]:
    """A folder of small generated RGB images and the CLI arguments of a tiny training run on it."""
    d = tmp_path / "imgs"
    d.mkdir()
    for k in range(images):
        Image.fromarray(natural_image(20, 24, 3, seed=k), "RGB").save(d / f"{k}.png")
    return ["train", str(d), "-o", str(out), "--filters", "8", "--blocks", "1", "--mixtures", "2",
            "--batch", "4", "--crop", "16", "--val-images", "1"]


def test_train_resume_and_use(tmp_path):
    out = tmp_path / "m.safetensors"
    args = _tiny_training_args(tmp_path, 4, out) + ["--checkpoint-every", "3"]
    r = CliRunner().invoke(main, args + ["--steps", "3"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out.unlink()  # keep the checkpoint, continue to 6 steps
    r = CliRunner().invoke(main, args + ["--steps", "6"], catch_exceptions=False)
    assert r.exit_code == 0 and "resumed" in r.output and "after 6 steps" in r.output
    model = zoo.load_model(out)
    assert model.metadata["steps"] == "6"
    assert len(json.loads(model.metadata["history"])) == 2
    assert "3.png" in model.metadata["validation"]
    a = natural_image(9, 8, 3, seed=9)
    assert np.array_equal(arcompress.decompress(arcompress.compress(a, model=str(out)), model=str(out)), a)
    r = CliRunner().invoke(main, args + ["--steps", "6"])
    assert r.exit_code == 1 and "already exists" in r.output


def test_noise_augmentation_touches_half_the_crops():
    from arcompress.train import add_noise

    rng = np.random.default_rng(0)
    crops = torch.from_numpy(rng.integers(0, 256, (400, 3, 8, 8), dtype=np.uint8))
    crops[:5] = 0  # saturated crops stay in range
    crops[5:10] = 255
    assert add_noise(crops, 0.0, rng) is crops
    noisy = add_noise(crops, 3.0, np.random.default_rng(1))
    assert noisy.dtype == torch.uint8 and noisy.shape == crops.shape
    diff = (noisy.int() - crops.int()).abs()
    changed = (diff.flatten(1).max(1).values > 0).float().mean().item()
    assert 0.35 < changed < 0.65  # about half the crops, each with its own std in [0, 3]
    assert diff.max() <= 3 * 6  # Gaussian tails at std 3 do not reach 6 sigma here
    stds = (noisy.double() - crops.double())[10:].flatten(1).std(1)
    assert stds.max() < 3.3 and (stds > 2.0).any()
    again = add_noise(crops, 3.0, np.random.default_rng(1))
    assert torch.equal(noisy, again)  # the generator's state decides, nothing else


def test_train_with_noise_and_audio_refuses_it(tmp_path):
    out = tmp_path / "m.safetensors"
    args = _tiny_training_args(tmp_path, 3, out) + ["--steps", "2", "--noise", "2"]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert json.loads(zoo.load_model(out).metadata["train_options"])["noise"] == 2.0
    r = CliRunner().invoke(main, ["train", str(tmp_path / "imgs"), "-o", str(tmp_path / "a.safetensors"),
                                  "--arch", "wavenet", "--noise", "1"])
    assert r.exit_code == 1 and "--noise applies to image training only" in r.output
    out.unlink()
    r = CliRunner().invoke(main, args[:-1] + ["-1"])
    assert r.exit_code == 1 and "--noise must be 0 or more" in r.output


def test_train_needs_images(tmp_path):
    r = CliRunner().invoke(main, ["train", str(tmp_path), "-o", str(tmp_path / "m.safetensors")])
    assert r.exit_code == 1 and "no images" in r.output


def test_train_audio_resume_and_use(tmp_path):
    import soundfile as sf

    from conftest import tone

    d = tmp_path / "takes"
    d.mkdir()
    for k in range(3):
        sf.write(d / f"{k}.wav", tone(3000, 1 + k % 2, seed=k).astype(np.int16), 8000 * (k + 1), subtype="PCM_16")
    out = tmp_path / "a.safetensors"
    args = ["train", str(d), "-o", str(out), "--residual", "4", "--skip", "4", "--layers", "2",
            "--mixtures", "2", "--batch", "2", "--crop", "256", "--checkpoint-every", "2", "--val-files", "1"]
    r = CliRunner().invoke(main, args + ["--steps", "2"], catch_exceptions=False)
    assert r.exit_code == 0 and "bits/sample" in r.output, r.output
    out.unlink()
    r = CliRunner().invoke(main, args + ["--steps", "4"], catch_exceptions=False)
    assert r.exit_code == 0 and "resumed" in r.output and "after 4 steps" in r.output
    model = zoo.load_model(out)
    assert model.is_audio and model.metadata["steps"] == "4" and model.config.lpc_cross == 8
    x = tone(500, 2).astype(np.int16)
    back, rate = arcompress.decompress_audio(arcompress.compress_audio(x, 8000, model=str(out)), model=str(out))
    assert rate == 8000 and np.array_equal(back, x)
    # a new run started from that model's weights, with predictors on each channel's own past only
    out2 = tmp_path / "b.safetensors"
    r = CliRunner().invoke(main, [*args[:3], str(out2), *args[4:], "--steps", "2", "--init", str(out),
                                  "--lpc-cross", "0"], catch_exceptions=False)
    assert r.exit_code == 0 and "started from" in r.output, r.output
    second = zoo.load_model(out2)
    assert second.config.lpc_cross == 0 and second.metadata["initialised_from"] == str(out)


def test_weight_average_math_and_swap():
    import torch

    from arcompress.train import WeightAverage

    m = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(0.0)
    avg = WeightAverage(m, decay=0.5)
    for value in (1.0, 3.0):
        with torch.no_grad():
            m.weight.fill_(value)
        avg.update(m)
    # d_0 = min(0.5, 1/10) = 0.1: 0 -> 0.9; d_1 = min(0.5, 2/11): 0.9 -> 0.9 + (9/11) * 2.1
    expected = 0.9 + (1 - 2 / 11) * (3.0 - 0.9)
    assert torch.allclose(avg.shadow["weight"], torch.full((1, 2), expected))
    with avg.swapped_in(m):
        assert torch.allclose(m.weight, torch.full((1, 2), expected))
    assert torch.equal(m.weight, torch.full((1, 2), 3.0))  # own weights back
    copy = WeightAverage(m, decay=0.5)
    assert copy.restore(avg.tensors()) and copy.updates == 2
    assert torch.equal(copy.shadow["weight"], avg.shadow["weight"])


def test_train_with_average_ships_the_average(tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "m.safetensors"
    args = _tiny_training_args(tmp_path, 3, out) + ["--checkpoint-every", "2", "--val-crops", "3",
                                                    "--average", "0.9", "--lr", "1e-2"]
    r = CliRunner().invoke(main, args + ["--steps", "2"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out.unlink()
    r = CliRunner().invoke(main, args + ["--steps", "4"], catch_exceptions=False)
    assert r.exit_code == 0 and "resumed" in r.output, r.output
    ckpt = load_file(str(tmp_path / "m.ckpt.safetensors"))
    assert float(ckpt["average_updates"][0]) == 4
    shipped = zoo.load_model(out).float_model().state_dict()
    name = next(k for k in shipped if f"average.{k}" in ckpt and k.endswith("weight"))
    assert torch_equal(shipped[name], ckpt[f"average.{name}"])
    assert not torch_equal(shipped[name], ckpt[f"model.{name}"])  # the average, not the last step


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a.float(), b.float()))
