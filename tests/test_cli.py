"""The command line: round trips for every mode and format, metadata, and every error path."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, PngImagePlugin

from arcompress import zoo
from arcompress.cli import main

from conftest import natural_image


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def pixels(path):
    with Image.open(path) as im:
        return im.mode, np.asarray(im).copy(), im.getpalette() if im.mode == "P" else None


def make(path, mode, size=(10, 7)):
    w, h = size
    a = natural_image(h, w, 4, seed=len(mode))
    if mode == "L":
        im = Image.fromarray(a[:, :, 0], "L")
    elif mode == "LA":
        im = Image.fromarray(a[:, :, :2], "LA")
    elif mode == "RGB":
        im = Image.fromarray(a[:, :, :3], "RGB")
    elif mode == "RGBA":
        im = Image.fromarray(a, "RGBA")
    elif mode == "P":
        im = Image.fromarray(a[:, :, :3], "RGB").quantize(37)
    elif mode == "1":
        im = Image.fromarray(a[:, :, 0], "L").convert("1")
    im.save(path)
    return path


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "1"])
def test_png_round_trip_every_mode(tmp_path, mode):
    src = make(tmp_path / "in.png", mode)
    r = run("encode", src, "-q")
    assert r.exit_code == 0, r.output
    arc = tmp_path / "in.png.arc"
    assert arc.exists() and src.exists()
    r = run("decode", arc, "-o", tmp_path / "out.png", "-q")
    assert r.exit_code == 0, r.output
    assert pixels(tmp_path / "out.png")[0] == mode
    m1, a1, p1 = pixels(src)
    m2, a2, p2 = pixels(tmp_path / "out.png")
    assert np.array_equal(a1, a2) and p1 == p2


@pytest.mark.parametrize("ext,mode", [(".bmp", "RGB"), (".tif", "RGBA"), (".ppm", "RGB"), (".pgm", "L"),
                                      (".webp", "RGB")])
def test_other_formats_in_and_out(tmp_path, ext, mode):
    src = make(tmp_path / f"in{ext}", mode) if ext != ".webp" else tmp_path / "in.webp"
    if ext == ".webp":
        Image.fromarray(natural_image(7, 10, 3), "RGB").save(src, lossless=True)
    assert run("encode", src, "-q").exit_code == 0
    out = tmp_path / f"out{ext}"
    assert run("decode", f"{src}.arc", "-o", out, "-q").exit_code == 0
    assert np.array_equal(pixels(src)[1], pixels(out)[1])
    # default name: the input's name without .arc, refused while the input is still there
    r = run("decode", f"{src}.arc", "-q")
    assert r.exit_code == 1 and "already exists" in r.output


def test_png_metadata_is_kept(tmp_path):
    src = tmp_path / "meta.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "arcompress test")
    info.add(b"gAMA", (45455).to_bytes(4, "big"))
    icc = b"\x00" * 128 + b"fake-icc-profile"
    Image.fromarray(natural_image(6, 5, 3), "RGB").save(src, pnginfo=info, icc_profile=icc, dpi=(300, 300))
    assert run("encode", src, "-q").exit_code == 0
    out = tmp_path / "out.png"
    assert run("decode", f"{src}.arc", "-o", out, "-q").exit_code == 0
    with Image.open(out) as im:
        assert im.text["Author"] == "arcompress test"
        assert im.info["icc_profile"] == icc
        assert abs(im.info["gamma"] - 0.45455) < 1e-6
        assert tuple(round(v) for v in im.info["dpi"]) == (300, 300)


def test_dropped_metadata_is_reported(tmp_path):
    src = tmp_path / "exif.png"
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    Image.fromarray(natural_image(5, 5, 3), "RGB").save(src, exif=exif)
    r = run("encode", src)
    assert r.exit_code == 0 and "metadata not kept: exif" in r.output


def test_verify_and_info(tmp_path):
    src = make(tmp_path / "v.png", "RGB")
    r = run("encode", src, "--verify")
    assert r.exit_code == 0 and "verified" in r.output
    r = run("info", f"{src}.arc")
    assert r.exit_code == 0 and "bits/sub-pixel" in r.output and f"model {zoo.DEFAULTS[3]} " in r.output


def test_model_best_tries_the_shipped_models(tmp_path):
    """--model best: each plane group is coded by the shipped model with the fewest estimated bits
    (RGBA: an RGB model and a grey one for alpha), named in the summary; decoding needs no --model."""
    from arcompress import zoo
    src = make(tmp_path / "b.png", "RGBA")
    r = run("encode", src, "--model", "best", "--verify")
    assert r.exit_code == 0 and "verified" in r.output, r.output
    names = json.loads(run("info", "--json", f"{src}.arc").output)
    chosen = [m["name"] for m in names["models"]]
    assert chosen[0] in [m.name for m in zoo.shipped_image_models(3)]
    assert chosen[1] in [m.name for m in zoo.shipped_image_models(1)]
    assert "+".join(chosen) in r.output
    out = tmp_path / "back.png"
    assert run("decode", f"{src}.arc", "-o", out).exit_code == 0
    assert np.array_equal(pixels(out)[1], pixels(src)[1])


def test_output_exists_is_refused_and_untouched(tmp_path):
    src = make(tmp_path / "a.png", "L")
    out = tmp_path / "a.png.arc"
    out.write_bytes(b"keep me")
    r = run("encode", src)
    assert r.exit_code == 1 and "already exists" in r.output and "--force" in r.output
    assert out.read_bytes() == b"keep me"
    assert run("encode", src, "--force", "-q").exit_code == 0
    assert out.read_bytes() != b"keep me"


@pytest.mark.parametrize("case", ["missing", "not_image", "sixteen_bit", "cmyk", "directory"])
def test_bad_inputs_fail_cleanly(tmp_path, case):
    path = tmp_path / "x.png"
    if case == "not_image":
        path.write_text("hello, I am text")
    elif case == "sixteen_bit":
        Image.fromarray(np.full((4, 4), 40000, np.uint16)).save(path)
    elif case == "cmyk":
        path = tmp_path / "x.tif"
        Image.new("CMYK", (4, 4)).save(path)
    elif case == "directory":
        path = tmp_path / "dir.png"
        path.mkdir()
    r = run("encode", path)
    assert r.exit_code == 1
    assert r.output.startswith("arcompress: error:") and len(r.output.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.arc")) and not list(tmp_path.glob(".*part*"))
    if case == "sixteen_bit":
        assert "16-bit" in r.output


def test_corrupt_and_truncated_arc_fail_without_output(tmp_path):
    src = make(tmp_path / "c.png", "RGB")
    assert run("encode", src, "-q").exit_code == 0
    data = (tmp_path / "c.png.arc").read_bytes()
    bad = tmp_path / "bad.arc"
    k = len(data) - 9  # inside the coded payload (its last word may hold unused padding bits)
    for blob in (data[: len(data) // 2], data[:k] + bytes([data[k] ^ 0xFF]) + data[k + 1:], b"garbage" * 10, b""):
        bad.write_bytes(blob)
        r = run("decode", bad)
        assert r.exit_code == 1 and r.output.startswith("arcompress: error:"), r.output
        assert not (tmp_path / "bad").exists()
        assert not list(tmp_path.glob(".*part*"))


def test_unknown_model_and_hash_mismatch(tmp_path, tiny_models):
    src = make(tmp_path / "m.png", "RGB")
    r = run("encode", src, "--model", "no-such-model")
    assert r.exit_code == 1 and "unknown model" in r.output
    # write with a custom model file, then try to decode without it: a clear message naming it
    from conftest import make_model
    make_model(tmp_path / "custom.safetensors", 3, seed=11)
    assert run("encode", src, "--model", tmp_path / "custom.safetensors", "-q").exit_code == 0
    r = run("decode", f"{src}.arc", "-o", tmp_path / "o.png")
    assert r.exit_code == 1 and "custom" in r.output and "not available" in r.output
    # a different model file under the same name: hash mismatch
    (tmp_path / "other").mkdir()
    make_model(tmp_path / "other" / "custom.safetensors", 3, seed=12)
    r = run("decode", f"{src}.arc", "-o", tmp_path / "o.png", "--model", tmp_path / "other" / "custom.safetensors")
    assert r.exit_code == 1 and "do not match" in r.output
    r = run("decode", f"{src}.arc", "-o", tmp_path / "o.png", "--model", tmp_path / "custom.safetensors", "-q")
    assert r.exit_code == 0 and np.array_equal(pixels(src)[1], pixels(tmp_path / "o.png")[1])


def test_not_a_model_file(tmp_path):
    src = make(tmp_path / "n.png", "L")
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}              ")
    r = run("encode", src, "--model", fake)
    assert r.exit_code == 1 and "model" in r.output


def test_output_option_needs_single_input(tmp_path):
    a, b = make(tmp_path / "a.png", "L"), make(tmp_path / "b.png", "L")
    r = CliRunner().invoke(main, ["encode", str(a), str(b), "-o", str(tmp_path / "x.arc")])
    assert r.exit_code == 2 and "single input" in r.output


def test_module_entry_point_round_trip(tmp_path):
    src = make(tmp_path / "e.png", "RGB", size=(6, 5))
    for args in (["encode", src, "-q"], ["decode", f"{src}.arc", "-o", tmp_path / "e2.png", "-q"]):
        p = subprocess.run([sys.executable, "-m", "arcompress", *map(str, args)], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    assert np.array_equal(pixels(src)[1], pixels(tmp_path / "e2.png")[1])
    p = subprocess.run([sys.executable, "-m", "arcompress", "decode", str(tmp_path / "nope.arc")],
                       capture_output=True, text=True)
    assert p.returncode == 1 and "no such file" in p.stderr


@pytest.mark.parametrize("kind", ["flat", "zeros", "saturated", "checker", "noise"])
@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 13, 1), (11, 1, 3), (9, 7, 4), (5, 6, 2), (34, 33, 3)])
@pytest.mark.parametrize("model", [None, "pixelsnail", "pixelcnn-multires"])
def test_worst_cases_round_trip_through_cli_with_shipped_models(tmp_path, kind, shape, model):
    from conftest import WORST_CASES
    a = WORST_CASES[kind](*shape)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[shape[2]]
    src = tmp_path / "w.png"
    Image.fromarray(a[:, :, 0] if shape[2] == 1 else a, mode).save(src)
    assert run("encode", src, "-q", "--verify", *(["--model", model] if model else [])).exit_code == 0
    if model and shape[2] in (3, 4):
        assert json.loads(run("info", "--json", f"{src}.arc").output)["models"][0]["name"] == model
    assert run("decode", f"{src}.arc", "-o", tmp_path / "w2.png", "-q").exit_code == 0
    assert np.array_equal(pixels(src)[1], pixels(tmp_path / "w2.png")[1])


@pytest.mark.parametrize("variant", ["duplicate_colours", "rgba_palette", "transparency"])
def test_palette_variants_round_trip(tmp_path, variant):
    a = natural_image(8, 9, 3, seed=3)
    im = Image.fromarray(a, "RGB").quantize(16)
    if variant == "duplicate_colours":  # two entries share a colour: coded as an index plane
        pal = im.getpalette()[:48]
        pal[3:6] = pal[0:3]
        im.putpalette(pal)
    elif variant == "rgba_palette":
        im = Image.fromarray(np.dstack([a, np.full(a.shape[:2], 200, np.uint8)]), "RGBA").quantize(12)
    else:
        im.info["transparency"] = 2
    src = tmp_path / "p.png"
    im.save(src, transparency=im.info["transparency"]) if variant == "transparency" else im.save(src)
    assert run("encode", src, "-q").exit_code == 0
    assert run("decode", f"{src}.arc", "-o", tmp_path / "p2.png", "-q").exit_code == 0
    m1, a1, p1 = pixels(src)
    m2, a2, p2 = pixels(tmp_path / "p2.png")
    assert (m1, p1) == (m2, p2) and np.array_equal(a1, a2)
    with Image.open(src) as x, Image.open(tmp_path / "p2.png") as y:
        assert x.info.get("transparency") == y.info.get("transparency")
    import arcompress
    coding = arcompress.info((tmp_path / "p.png.arc").read_bytes())["models"]
    assert [m["channels"] for m in coding] == ([1] if variant == "duplicate_colours" else [3])


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_device_cuda_without_gpu_is_a_clear_error(tmp_path):
    src = make(tmp_path / "g.png", "RGB")
    r = run("encode", src, "--device", "cuda")
    assert r.exit_code == 1 and "no CUDA GPU" in r.output and not (tmp_path / "g.png.arc").exists()


def test_decoded_name_and_format_from_a_lossy_input(tmp_path):
    src = tmp_path / "photo.jpg"
    Image.fromarray(natural_image(8, 8, 3), "RGB").save(src, quality=90)
    assert run("encode", src, "-q").exit_code == 0
    assert run("decode", tmp_path / "photo.jpg.arc", "-q").exit_code == 0
    out = tmp_path / "photo.jpg.png"
    with Image.open(out) as im:
        assert im.format == "PNG"
    assert np.array_equal(pixels(src)[1], pixels(out)[1])
    r = run("decode", tmp_path / "photo.jpg.arc", "-o", tmp_path / "x.jpg")
    assert r.exit_code == 1 and "losslessly" in r.output and not (tmp_path / "x.jpg").exists()


def test_info_names_the_level_sets(tmp_path):
    """An image whose levels are all multiples of 8 is coded with level sets; info says how many
    levels each channel uses, and the file decodes to the same pixels."""
    src = tmp_path / "s.png"
    Image.fromarray(natural_image(24, 20, 3, seed=5) // 8 * 8, "RGB").save(src)
    assert run("encode", src, "--verify").exit_code == 0
    r = run("info", f"{src}.arc")
    counts = [len(np.unique(pixels(src)[1][..., c])) for c in range(3)]
    assert r.exit_code == 0 and f"levels used per channel (coded as level sets): {', '.join(map(str, counts))}" in r.output
    assert json.loads(run("info", "--json", f"{src}.arc").output)["models"][0]["level_sets"] == counts
