"""arcompress train: a short run on generated images, resume from checkpoint, usable model file."""

import json

import numpy as np
from click.testing import CliRunner
from PIL import Image

import arcompress
from arcompress import zoo
from arcompress.cli import main

from conftest import natural_image


def test_train_resume_and_use(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for k in range(4):
        Image.fromarray(natural_image(20, 24, 3, seed=k), "RGB").save(d / f"{k}.png")
    out = tmp_path / "m.safetensors"
    args = ["train", str(d), "-o", str(out), "--filters", "8", "--blocks", "1", "--mixtures", "2",
            "--batch", "4", "--crop", "16", "--checkpoint-every", "3", "--val-images", "1"]
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
    assert model.is_audio and model.metadata["steps"] == "4"
    x = tone(500, 2).astype(np.int16)
    back, rate = arcompress.decompress_audio(arcompress.compress_audio(x, 8000, model=str(out)), model=str(out))
    assert rate == 8000 and np.array_equal(back, x)
