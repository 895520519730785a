"""Shared fixtures: small exact models made on the fly, and synthetic test images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arcompress import zoo
from arcompress.multires import MultiResConfig, MultiResPixelCNN
from arcompress.pixelcnn import PixelCNN, PixelCNNConfig
from arcompress.pixelsnail import PixelSNAIL, PixelSNAILConfig


def make_model(path, channels: int, filters: int = 8, blocks: int = 2, mixtures: int = 3,
               seed: int = 0, gain: float = 1.0, snail: bool = False, resolutions: int = 0) -> zoo.ExactModel:
    """A small random-weight model (PixelCNN++, PixelSNAIL if ``snail``, multi-resolution
    PixelCNN++ with ``resolutions`` > 0) written as a model file and loaded back.

    ``gain`` scales every weight: large gains drive activations into the clamps and the lookup
    tables' ends (worst case for exactness).
    """
    torch.manual_seed(seed)
    shape = dict(channels=channels, filters=filters, blocks=blocks, mixtures=mixtures)
    if snail:
        model = PixelSNAIL(PixelSNAILConfig(**shape, key=4, value=8))
    elif resolutions:
        model = MultiResPixelCNN(MultiResConfig(**{**shape, "blocks": 1}, resolutions=resolutions))
    else:
        model = PixelCNN(PixelCNNConfig(**shape))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "att" in name and "_o." in name:  # the attention outputs start at zero: make them count
                p.normal_(0, 0.3)
            p.mul_(gain)
    zoo.save_model(path, model, {"name": path.stem})
    return zoo.load_model(path)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {1: make_model(d / "tiny-gray.safetensors", 1), 3: make_model(d / "tiny-rgb.safetensors", 3)}


@pytest.fixture(scope="session")
def loud_models(tmp_path_factory):
    """Models with large weights: saturated activations and extreme mixture parameters."""
    d = tmp_path_factory.mktemp("loud")
    return {1: make_model(d / "loud-gray.safetensors", 1, seed=1, gain=40.0),
            3: make_model(d / "loud-rgb.safetensors", 3, seed=2, gain=40.0)}


@pytest.fixture(scope="session")
def snail_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("snail")
    return {1: make_model(d / "snail-gray.safetensors", 1, seed=3, snail=True),
            3: make_model(d / "snail-rgb.safetensors", 3, seed=4, snail=True)}


@pytest.fixture(scope="session")
def loud_snail_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("loud-snail")
    return {1: make_model(d / "loud-snail-gray.safetensors", 1, seed=5, gain=40.0, snail=True),
            3: make_model(d / "loud-snail-rgb.safetensors", 3, seed=6, gain=40.0, snail=True)}


@pytest.fixture(scope="session")
def multires_models(tmp_path_factory):
    """Three resolutions: an 8x8 tile reaches a 2x2 coarsest grid, ragged tiles odd sizes."""
    d = tmp_path_factory.mktemp("multires")
    return {1: make_model(d / "multires-gray.safetensors", 1, seed=7, resolutions=3),
            3: make_model(d / "multires-rgb.safetensors", 3, seed=8, resolutions=3)}


@pytest.fixture(scope="session")
def loud_multires_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("loud-multires")
    return {1: make_model(d / "loud-multires-gray.safetensors", 1, seed=9, gain=40.0, resolutions=3),
            3: make_model(d / "loud-multires-rgb.safetensors", 3, seed=10, gain=40.0, resolutions=3)}


#: the image model fixtures every exactness test runs on
IMAGE_MODEL_FIXTURES = ["tiny_models", "snail_models", "multires_models"]
#: their saturating ("loud") versions
LOUD_MODEL_FIXTURES = ["loud_models", "loud_snail_models", "loud_multires_models"]


def natural_image(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    """A smooth synthetic scene (gradients, a disc, texture, noise) as uint8 (H, W, C)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = 90 + 60 * np.sin(x / 7.0) * np.cos(y / 11.0) + 0.8 * x - 0.5 * y
    disc = ((x - w / 2) ** 2 + (y - h / 3) ** 2) < (min(h, w) / 4) ** 2
    chans = [base + 40 * disc * (k - 1) + rng.normal(0, 3, (h, w)) for k in range(c)]
    return np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)


WORST_CASES = {
    "flat": lambda h, w, c: np.full((h, w, c), 117, np.uint8),
    "zeros": lambda h, w, c: np.zeros((h, w, c), np.uint8),
    "saturated": lambda h, w, c: np.full((h, w, c), 255, np.uint8),
    "checker": lambda h, w, c: (((np.indices((h, w)).sum(0) % 2) * 255)[..., None]
                                .repeat(c, -1).astype(np.uint8)),
    "noise": lambda h, w, c: np.random.default_rng(5).integers(0, 256, (h, w, c), dtype=np.uint8),
    "natural": lambda h, w, c: natural_image(h, w, c),
}


def make_audio_model(path, seed: int = 0, gain: float = 1.0, cross: int = 0) -> zoo.ExactModel:
    """A small random-weight WaveNet written as a model file and loaded back; ``cross``: its
    predictors' taps on the reference channel."""
    from arcompress.wavenet import WaveNet, WaveNetConfig

    torch.manual_seed(seed)
    model = WaveNet(WaveNetConfig(residual=8, skip=8, layers=4, cycle=3, mixtures=3, lpc=8, lpc_cross=cross))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(gain)
    zoo.save_model(path, model, {"name": path.stem})
    return zoo.load_model(path)


@pytest.fixture(scope="session")
def audio_models(tmp_path_factory):
    """A tiny audio model, a loud one (saturated activations, extreme mixture parameters), and
    one whose predictors also use the reference channel (11 taps there: more than its 8 own)."""
    d = tmp_path_factory.mktemp("audio_models")
    return {"tiny": make_audio_model(d / "tiny-audio.safetensors"),
            "loud": make_audio_model(d / "loud-audio.safetensors", seed=3, gain=40.0),
            "cross": make_audio_model(d / "cross-audio.safetensors", seed=5, gain=3.0, cross=11)}


def tone(frames: int, channels: int = 1, bits: int = 16, seed: int = 0) -> np.ndarray:
    """A synthetic recording: decaying tones per channel plus noise, native int32 (frames, C)."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None]
    full = 2 ** (bits - 1)
    x = np.sin(t * 0.03 * (1 + np.arange(channels))) * 0.4 * full * np.exp(-t / (3 * frames + 1))
    x = x + rng.normal(0, full / 500 + 1, (frames, channels))
    return np.clip(np.round(x), -full, full - 1).astype(np.int32)


AUDIO_WORST_CASES = {
    "silence": lambda n, c, b: np.zeros((n, c), np.int32),
    "dc": lambda n, c, b: np.full((n, c), 2 ** (b - 3) + 5, np.int32),
    "square": lambda n, c, b: np.where((np.arange(n)[:, None] // 7) % 2 == 0, 2 ** (b - 1) - 1,
                                       -2 ** (b - 1)).repeat(c, 1).astype(np.int32),
    "noise": lambda n, c, b: np.random.default_rng(9).integers(-2 ** (b - 1), 2 ** (b - 1), (n, c)).astype(np.int32),
    "clipped": lambda n, c, b: np.clip(tone(n, c, b) * 4, -2 ** (b - 1), 2 ** (b - 1) - 1).astype(np.int32),
    "tone": lambda n, c, b: tone(n, c, b),
}


def assert_cli_round_trip(tmp_path, model_file, a: np.ndarray) -> None:
    """Encode and decode image ``a`` (uint8 (H, W) or (H, W, 3)) through the CLI with
    ``--model model_file``; the decoded pixels must be identical."""
    from click.testing import CliRunner
    from PIL import Image

    from arcompress.cli import main
    src, arc, back = tmp_path / "a.png", tmp_path / "a.png.arc", tmp_path / "b.png"
    Image.fromarray(a).save(src)
    assert CliRunner().invoke(main, ["encode", str(src), "--model", str(model_file), "-q"]).exit_code == 0
    r = CliRunner().invoke(main, ["decode", str(arc), "-o", str(back), "--model", str(model_file), "-q"])
    assert r.exit_code == 0, r.output
    with Image.open(back) as im:
        assert np.array_equal(np.asarray(im), a)
