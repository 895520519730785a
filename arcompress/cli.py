"""The ``arcompress`` command line (click)."""

from __future__ import annotations

import json
import sys
import time

import click

from . import api, zoo

EXPECTED_ERRORS = (ValueError, OSError, RuntimeError)


def _fail(msg: str) -> None:
    click.echo(f"arcompress: error: {msg}", err=True)


def _run_each(inputs, output, action) -> None:
    if output and len(inputs) > 1:
        raise click.UsageError("-o/--output takes a single input")
    failed = 0
    for path in inputs:
        try:
            action(path)
        except KeyboardInterrupt:
            _fail("interrupted")
            sys.exit(130)
        except EXPECTED_ERRORS as e:
            failed += 1
            _fail(str(e) if str(e).startswith(str(path)) else f"{path}: {e}")
    if failed:
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="arcompress")
def main() -> None:
    """Lossless image compression with learned autoregressive models (PixelCNN++).

    \b
    arcompress encode photo.png          -> photo.png.arc
    arcompress decode photo.png.arc      -> photo.png (identical pixels)
    arcompress info photo.png.arc        -> header and bits per sub-pixel
    arcompress train DIR -o my.safetensors   then: arcompress encode --model my.safetensors ...
    """


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Output file (one input only). Default: INPUT.arc")
@click.option("-m", "--model", help=f"Model: a shipped name ({', '.join(zoo.SHIPPED)}) or a model file "
              "(from 'arcompress train'). It codes the planes with its channel count (3: colour, 1: grey "
              "and alpha); the shipped model codes the others. Default: the shipped models.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the encoder's forward pass runs (decoding is always exact on the CPU).")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@click.option("--verify", is_flag=True, help="Decode the result and compare before reporting success.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or summary lines.")
def encode(inputs, output, model, device, force, verify, quiet):
    """Compress images (PNG, PPM/PGM, BMP, TIFF, lossless WebP; 8-bit L, LA, RGB, RGBA, P).

    Inputs are kept. An existing output is never overwritten without --force, and output is
    written to a temporary file that is renamed into place only when complete.
    """
    def one(path):
        t = time.time()
        r = api.encode_file(path, output, model=model, device=device, force=force, verify=verify,
                            progress=None if not quiet else False)
        if r["dropped_metadata"] and not quiet:
            click.echo(f"arcompress: warning: {path}: metadata not kept: {', '.join(r['dropped_metadata'])}", err=True)
        if not quiet:
            click.echo(f"{r['input']} -> {r['output']}: {r['bytes']} bytes, "
                       f"{r['bits_per_subpixel']:.3f} bits/sub-pixel "
                       f"(model {r['model_bits_per_subpixel']:.3f}){', verified' if verify else ''} "
                       f"in {time.time() - t:.1f} s")
    _run_each(inputs, output, one)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Output file (one input only); its extension picks the format (.png, .bmp, .tif, "
                   ".ppm/.pgm, .webp). Default: INPUT without .arc")
@click.option("-m", "--model", help="Model file, when the .arc was written with a model that is not shipped.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or summary lines.")
def decode(inputs, output, model, force, quiet):
    """Decompress .arc files back to the identical image."""
    def one(path):
        t = time.time()
        r = api.decode_file(path, output, model=model, force=force, progress=None if not quiet else False)
        if not quiet:
            click.echo(f"{r['input']} -> {r['output']}: {r['width']}x{r['height']} {r['mode']} "
                       f"in {time.time() - t:.1f} s")
    _run_each(inputs, output, one)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(inputs, as_json):
    """Print the header of .arc files and their bits per sub-pixel."""
    def one(path):
        with open(path, "rb") as f:
            r = api.info(f.read())
        if as_json:
            click.echo(json.dumps({"file": path, **r}, indent=2))
            return
        click.echo(f"{path}: {r['width']}x{r['height']} {r['mode']}, {r['file_bytes']} bytes, "
                   f"{r['bits_per_subpixel']:.4f} bits/sub-pixel")
        click.echo(f"  format {r['format_version']}, exact scheme {r['scheme']}, tiles {r['tile']}x{r['tile']}, "
                   f"{r['tiles_per_segment']} tiles per segment, CRC-32 {r['crc32']}")
        for m in r["models"]:
            click.echo(f"  model {m['name']} sha256 {m['sha256']} ({m['channels']} channel(s), "
                       f"{m['segments']} segment(s), {m['payload_bytes']} bytes)")
        if r["metadata"]:
            click.echo(f"  metadata: {', '.join(r['metadata'])}")
    _run_each(inputs, None, one)


@main.command()
@click.argument("images_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Model file to write (.safetensors).")
@click.option("--channels", type=click.Choice(["1", "3"]), default="3", show_default=True,
              help="3: an RGB model; 1: a grey model (colour images are converted to grey).")
@click.option("--filters", default=48, show_default=True)
@click.option("--blocks", default=3, show_default=True, help="Gated resnet blocks per stream.")
@click.option("--mixtures", default=5, show_default=True, help="Logistic mixture components.")
@click.option("--steps", default=2000, show_default=True, help="Total optimisation steps (a resumed run continues to this).")
@click.option("--batch", default=16, show_default=True)
@click.option("--crop", default=32, show_default=True, help="Side of the random training crops.")
@click.option("--lr", default=1e-3, show_default=True, help="Adam learning rate at step 0.")
@click.option("--lr-decay", default=0.998, show_default=True, help="Learning rate = lr * lr_decay ** (step / 10).")
@click.option("--threads", default=0, help="CPU threads for training (default: PyTorch's choice).")
@click.option("--val-images", default=0, help="Whole images held out for validation (default: ~10 %).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Checkpoint file (default: OUTPUT.ckpt.safetensors); resumed if present.")
@click.option("--checkpoint-every", default=200, show_default=True)
@click.option("--seed", default=0, show_default=True)
def train(images_dir, output, channels, filters, blocks, mixtures, steps, batch, crop, lr, lr_decay, threads,
          val_images, checkpoint, checkpoint_every, seed):
    """Train a PixelCNN++ on a folder of images and write an exact model file.

    The last images (sorted by name) are held out whole for the validation bits per sub-pixel.
    Stop at any time: rerunning the same command resumes from the checkpoint.
    """
    from .pixelcnn import PixelCNNConfig
    from .train import TrainOptions, train as run

    if api.Path(output).exists():
        raise click.ClickException(f"{output}: already exists")
    cfg = PixelCNNConfig(channels=int(channels), filters=filters, blocks=blocks, mixtures=mixtures)
    opts = TrainOptions(steps=steps, batch=batch, crop=crop, lr=lr, lr_decay=lr_decay, threads=threads,
                        val_images=val_images, checkpoint_every=checkpoint_every, seed=seed)
    try:
        r = run(images_dir, output, cfg, opts, checkpoint=checkpoint, log=click.echo)
    except (ValueError, OSError) as e:
        _fail(str(e))
        sys.exit(1)
    click.echo(f"wrote {output}: validation {r['val_bpsp']:.4f} bits/sub-pixel (float model) after {r['steps']} steps")


if __name__ == "__main__":
    main()
