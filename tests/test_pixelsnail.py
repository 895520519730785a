"""PixelSNAIL: attention reaches the whole past, starts as its PixelCNN++, trains from one.

(Bit-exactness of batched vs cached decoding, threads, tiling and lock-step composition is pinned
for PixelSNAIL by the shared tests in test_exactness.py, with the exact-vs-float NLL check.)"""

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

from arcompress import zoo
from arcompress.cli import main
from arcompress.pixelsnail import PixelSNAIL, PixelSNAILConfig

from conftest import assert_cli_round_trip, natural_image


def _params(model, img: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    inside = torch.ones(1, 1, *img.shape[:2])
    return model.net.forward(model.ops, model.ops.embed(x, inside))[0]


def test_attention_sees_beyond_the_convolutions(tiny_models, snail_models):
    """A pixel far up and to the right changes the bottom-left pixel's distribution only through
    attention: PixelCNN++'s receptive field does not reach it, PixelSNAIL's does."""
    a = natural_image(12, 12, 3, seed=2)
    b = a.copy()
    b[0, 11] = 255 - b[0, 11]
    for models, reaches in ((tiny_models, False), (snail_models, True)):
        pa, pb = _params(models[3], a), _params(models[3], b)
        assert torch.equal(pa[:, 0, :], pb[:, 0, :])  # causal: row 0 never sees its last pixel
        assert bool((pa[:, 11, 0] != pb[:, 11, 0]).any()) == reaches


def test_new_attention_starts_as_its_pixelcnn(tiny_models, tmp_path):
    """Zero-initialised attention outputs: a PixelSNAIL started from a PixelCNN++ computes the same."""
    cnn = tiny_models[3].float_model()
    cfg = cnn.cfg
    snail = PixelSNAIL(PixelSNAILConfig(channels=cfg.channels, filters=cfg.filters, blocks=cfg.blocks,
                                        mixtures=cfg.mixtures, key=4, value=8))
    from arcompress.train import init_from
    copied = init_from(snail, tiny_models[3].source, log=lambda *_: None)
    assert len(copied) == len(cnn.float_state())
    x = torch.from_numpy(natural_image(10, 9, 3, seed=1)).permute(2, 0, 1)[None]
    with torch.no_grad():
        assert torch.allclose(snail(x), cnn(x))


def test_train_pixelsnail_from_pixelcnn_and_use_it(tmp_path, tiny_models):
    d = tmp_path / "imgs"
    d.mkdir()
    for k in range(3):
        Image.fromarray(natural_image(20, 20, 3, seed=k), "RGB").save(d / f"{k}.png")
    out = tmp_path / "snail.safetensors"
    r = CliRunner().invoke(main, ["train", str(d), "-o", str(out), "--arch", "pixelsnail", "--filters", "8",
                                  "--blocks", "2", "--mixtures", "3", "--key", "4", "--value", "8",
                                  "--init", tiny_models[3].source, "--batch", "2", "--crop", "12",
                                  "--steps", "2", "--val-images", "1"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "started from" in r.output
    model = zoo.load_model(out)
    assert model.arch == "pixelsnail" and model.config.key == 4
    a = natural_image(9, 14, 3, seed=5)
    assert_cli_round_trip(tmp_path, out, a)
    bad = CliRunner().invoke(main, ["train", str(d), "-o", str(tmp_path / "x.safetensors"), "--arch", "pixelsnail",
                                    "--key", "5", "--steps", "1"])
    assert bad.exit_code == 1 and "out of range" in bad.output


def test_attention_in_blocks_gives_the_same_bits(snail_models, monkeypatch):
    """The batched pass attends whole tiles at once or blocks of query rows: same parameters."""
    model = snail_models[3]
    img = natural_image(12, 10, 3, seed=6)
    whole = _params(model, img)
    monkeypatch.setattr(type(model.ops), "ATTEND_BLOCK", 7 * 120)  # 7 query rows of a 120-pixel tile
    assert torch.equal(_params(model, img), whole)
