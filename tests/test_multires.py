"""Multi-resolution PixelCNN++: causal at every size, sees further than the single-resolution
network, trains and codes through the CLI.

(Bit-exactness of batched vs cached decoding, threads, tiling and lock-step composition is pinned
for it by the shared tests in test_exactness.py, with the exact-vs-float NLL check.)"""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from arcompress import multires, zoo
from arcompress.cli import main

from conftest import assert_cli_round_trip, natural_image


@pytest.mark.parametrize("resolutions", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (6, 1), (5, 7), (9, 12)])
def test_output_never_sees_its_own_or_later_pixels(resolutions, shape):
    """Gradient of pixel (i, j)'s parameters w.r.t. the input: zero at (i, j) and after it."""
    torch.manual_seed(resolutions)
    cfg = multires.MultiResConfig(channels=3, filters=6, blocks=1, mixtures=2, resolutions=resolutions)
    model = multires.Model(cfg).double()
    h, w = shape
    x = torch.randn(1, 4, h, w, dtype=torch.float64, requires_grad=True)
    out = multires.forward(model.ops, x)
    order = torch.arange(h * w).view(h, w)
    for i in range(h):
        for j in range(w):
            g, = torch.autograd.grad(out[0, :, i, j].sum(), x, retain_graph=True)
            seen = g[0].abs().sum(0) > 0
            assert not bool((seen & (order >= i * w + j)).any()), (i, j)


def _params(model, img: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    return model.net.forward(model.ops, model.ops.embed(x, torch.ones(1, 1, *img.shape[:2])))[0]


def test_coarse_resolutions_reach_further(tiny_models, multires_models):
    """A pixel 7 rows up and 6 columns left changes the bottom pixel's distribution through the
    coarse resolutions; the single-resolution network's receptive field does not reach it."""
    a = natural_image(8, 8, 3, seed=2)
    b = a.copy()
    b[0, 0] = 255 - b[0, 0]
    for models, reaches in ((tiny_models, False), (multires_models, True)):
        pa, pb = _params(models[3], a), _params(models[3], b)
        assert torch.equal(pa[:, 0, 0], pb[:, 0, 0])  # causal: pixel (0, 0) never sees itself
        assert bool((pa[:, 7, 6] != pb[:, 7, 6]).any()) == reaches


def test_train_multires_and_use_it(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for k in range(3):
        Image.fromarray(natural_image(20, 20, 1, seed=k)[:, :, 0], "L").save(d / f"{k}.png")
    out = tmp_path / "multi.safetensors"
    r = CliRunner().invoke(main, ["train", str(d), "-o", str(out), "--arch", "multires", "--channels", "1",
                                  "--filters", "8", "--blocks", "1", "--resolutions", "2", "--mixtures", "3",
                                  "--batch", "2", "--crop", "12", "--steps", "2", "--val-images", "1"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    model = zoo.load_model(out)
    assert model.arch == multires.ARCH and model.config.resolutions == 2
    a = natural_image(9, 14, 1, seed=5)[:, :, 0]
    assert_cli_round_trip(tmp_path, out, a)
    bad = CliRunner().invoke(main, ["train", str(d), "-o", str(tmp_path / "x.safetensors"), "--arch", "multires",
                                    "--resolutions", "9", "--steps", "1"])
    assert bad.exit_code == 1 and "out of range" in bad.output
