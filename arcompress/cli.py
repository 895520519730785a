"""The ``arcompress`` command line (click)."""

from __future__ import annotations

import json
import sys
import time

import click

from . import api, zoo
from .calibration import GAIN_ONE
from .fixedpoint import ONE

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
    """Lossless image and audio compression with learned autoregressive models
    (PixelCNN++ for images, WaveNet for audio).

    \b
    arcompress encode photo.png          -> photo.png.arc
    arcompress decode photo.png.arc      -> photo.png (identical pixels)
    arcompress encode take.flac          -> take.flac.arc (also .wav, .aiff)
    arcompress decode take.flac.arc      -> take.flac (identical samples, rate and subtype)
    arcompress info photo.png.arc        -> header and bits per sub-pixel / sample
    arcompress train DIR -o my.safetensors   then: arcompress encode --model my.safetensors ...
    """


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Output file (one input only). Default: INPUT.arc")
@click.option("-m", "--model", help=f"Model: a shipped name ({', '.join(zoo.SHIPPED)}) or a model file "
              "(from 'arcompress train'). It codes the planes with its channel count (3: colour, 1: grey "
              "and alpha); the shipped model codes the others. Default: the shipped models. 'best': try "
              "every shipped image model and keep the smallest (encoding takes one forward pass per model "
              "tried; decoding is as fast as with the model chosen).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the encoder's forward pass runs (decoding is always exact on the CPU).")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@click.option("--verify", is_flag=True, help="Decode the result and compare before reporting success.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or summary lines.")
def encode(inputs, output, model, device, force, verify, quiet):
    """Compress images (PNG, PPM/PGM, BMP, TIFF, lossless WebP; 8-bit L, LA, RGB, RGBA, P)
    and audio (WAV, FLAC, AIFF; 8-, 16- or 24-bit integer PCM, any rate and channel count).

    Inputs are kept. An existing output is never overwritten without --force, and output is
    written to a temporary file that is renamed into place only when complete.
    """
    def one(path):
        t = time.time()
        r = api.encode_file(path, output, model=model, device=device, force=force, verify=verify,
                            progress=None if not quiet else False)
        if r["dropped_metadata"] and not quiet:
            click.echo(f"arcompress: warning: {path}: metadata not kept: {', '.join(r['dropped_metadata'])}", err=True)
        if not quiet and r.get("kind") == "audio":
            click.echo(f"{r['input']} -> {r['output']}: {r['bytes']} bytes, "
                       f"{r['bits_per_sample']:.3f} bits/sample "
                       f"(model {r['model_bits_per_sample']:.3f}){', verified' if verify else ''} "
                       f"in {time.time() - t:.1f} s")
        elif not quiet:
            click.echo(f"{r['input']} -> {r['output']}: {r['bytes']} bytes, "
                       f"{r['bits_per_subpixel']:.3f} bits/sub-pixel "
                       f"(model {r['model_bits_per_subpixel']:.3f}, {'+'.join(r['models'])})"
                       f"{', verified' if verify else ''} "
                       f"in {time.time() - t:.1f} s")
    _run_each(inputs, output, one)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Output file (one input only); its extension picks the format (.png, .bmp, .tif, "
                   ".ppm/.pgm, .webp; .wav, .flac, .aiff). Default: INPUT without .arc")
@click.option("-m", "--model", help="Model file, when the .arc was written with a model that is not shipped.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or summary lines.")
def decode(inputs, output, model, force, quiet):
    """Decompress .arc files back to the identical image or recording."""
    def one(path):
        t = time.time()
        r = api.decode_file(path, output, model=model, force=force, progress=None if not quiet else False)
        if not quiet and r.get("kind") == "audio":
            click.echo(f"{r['input']} -> {r['output']}: {r['channels']} channel(s), {r['rate']} Hz, "
                       f"{r['bits']}-bit, {r['frames']} frames in {time.time() - t:.1f} s")
        elif not quiet:
            click.echo(f"{r['input']} -> {r['output']}: {r['width']}x{r['height']} {r['mode']} "
                       f"in {time.time() - t:.1f} s")
    _run_each(inputs, output, one)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(inputs, as_json):
    """Print the header of .arc files and their bits per sub-pixel (or per sample)."""
    def one(path):
        with open(path, "rb") as f:
            r = api.info(f.read())
        if as_json:
            click.echo(json.dumps({"file": path, **r}, indent=2))
            return
        if r.get("kind") == "audio":
            click.echo(f"{path}: audio, {r['channels']} channel(s), {r['rate']} Hz, {r['bits']}-bit "
                       f"{r['container']} {r['subtype']}, {r['frames']} frames ({r['seconds']:.2f} s), "
                       f"{r['file_bytes']} bytes, {r['bits_per_sample']:.4f} bits/sample")
            click.echo(f"  format {r['format_version']}, exact scheme {r['scheme']}, chunks of {r['chunk']} "
                       f"frames, {r['chunks_per_segment']} chunks per segment, CRC-32 {r['crc32']}, "
                       f"wasted low bits {r['wasted_bits']}")
            m = r["models"][0]
            click.echo(f"  model {m['name']} sha256 {m['sha256']} ({m['segments']} segment(s), "
                       f"{m['payload_bytes']} bytes)")
            return
        click.echo(f"{path}: {r['width']}x{r['height']} {r['mode']}, {r['file_bytes']} bytes, "
                   f"{r['bits_per_subpixel']:.4f} bits/sub-pixel")
        click.echo(f"  format {r['format_version']}, exact scheme {r['scheme']}, tiles {r['tile']}x{r['tile']}, "
                   f"{r['tiles_per_segment']} tiles per segment, CRC-32 {r['crc32']}")
        for m in r["models"]:
            click.echo(f"  model {m['name']} sha256 {m['sha256']} ({m['channels']} channel(s), "
                       f"{m['segments']} segment(s), {m['payload_bytes']} bytes)")
            if m["level_sets"]:
                counts = ", ".join("all" if n is None else str(n) for n in m["level_sets"])
                click.echo(f"    levels used per channel (coded as level sets): {counts}")
            if m["calibration"]:
                cal = m["calibration"]
                click.echo(f"    calibrated: {len(cal['gains'])} output parameters, gains "
                           f"{min(cal['gains']) / GAIN_ONE:+.3f} to {max(cal['gains']) / GAIN_ONE:+.3f}, offsets "
                           f"{min(cal['offsets']) / ONE:+.3f} to {max(cal['offsets']) / ONE:+.3f}")
        if r["metadata"]:
            click.echo(f"  metadata: {', '.join(r['metadata'])}")
    _run_each(inputs, None, one)


@main.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Model file to write (.safetensors).")
@click.option("--arch", type=click.Choice(["auto", "pixelcnn", "multires", "pixelsnail", "wavenet"]), default="auto",
              show_default=True, help="pixelcnn: an image model (PixelCNN++, single resolution); multires: "
              "PixelCNN++ with its strided multi-resolution U-net; pixelsnail: an image model with causal "
              "self-attention; wavenet: an audio model; auto: pixelcnn or wavenet by what DATA_DIR holds.")
@click.option("--channels", type=click.Choice(["1", "3"]), default="3", show_default=True,
              help="Images: 3 for an RGB model; 1 for a grey model (colour images are converted to grey).")
@click.option("--filters", default=48, show_default=True, help="Images: feature maps per stream.")
@click.option("--blocks", default=3, show_default=True, help="Images: gated resnet blocks per stream "
              "(PixelSNAIL: each followed by an attention layer; multires: per resolution and pass).")
@click.option("--resolutions", default=3, show_default=True, help="multires: resolutions of the U-net "
              "(full, 1/2, 1/4, ...).")
@click.option("--key", default=16, show_default=True, help="PixelSNAIL: attention key width (a power of 4).")
@click.option("--value", default=32, show_default=True, help="PixelSNAIL: attention value width.")
@click.option("--residual", default=24, show_default=True, help="Audio: residual channels.")
@click.option("--skip", default=48, show_default=True, help="Audio: skip channels.")
@click.option("--layers", default=10, show_default=True, help="Audio: dilated layers (dilations 1, 2, ..., 512, repeated).")
@click.option("--lpc-cross", default=8, show_default=True, help="Audio: taps of each channel's linear predictor "
              "on the channel before it (present and past samples; 0: channels predicted from their own past only).")
@click.option("--mixtures", default=None, type=int, help="Logistic mixture components (default: 5 images, 4 audio).")
@click.option("--steps", default=2000, show_default=True, help="Total optimisation steps (a resumed run continues to this).")
@click.option("--batch", default=None, type=int, help="Crops per step (default: 16 images, 8 audio).")
@click.option("--crop", default=None, type=int, help="Crop size: image side (default 32) or audio samples (default 4096).")
@click.option("--lr", default=1e-3, show_default=True, help="Adam learning rate at step 0.")
@click.option("--lr-decay", default=0.998, show_default=True, help="Learning rate = lr * lr_decay ** (step / 10).")
@click.option("--threads", default=0, help="CPU threads for training (default: PyTorch's choice).")
@click.option("--val-files", "--val-images", "val_files", default=0,
              help="Whole files held out for validation (default: ~10 %, the last by name).")
@click.option("--val-dir", type=click.Path(exists=True, file_okay=False),
              help="Audio: validate on this folder instead of holding files out.")
@click.option("--init", "init", default=None, help="Start from this model's float weights (shipped name or "
              "file), layer by layer where names and shapes match, e.g. a PixelSNAIL from pixelcnn-rgb.")
@click.option("--val-crops", default=16, show_default=True, help="Images: random crops of each held-out "
              "image that validation measures (more: a steadier figure, slower checkpoints).")
@click.option("--average", default=0.0, show_default=True, help="Decay of a Polyak (moving) average of the "
              "weights, e.g. 0.999: validation measures it and the model file gets it; 0 ships the last step's weights.")
@click.option("--noise", default=0.0, show_default=True, help="Images: add Gaussian noise to half of the "
              "training crops, its std drawn uniformly from 0 to this many levels (scans and camera noise "
              "are grainier than downsampled photos); 0: none.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Checkpoint file (default: OUTPUT.ckpt.safetensors); resumed if present.")
@click.option("--checkpoint-every", default=200, show_default=True)
@click.option("--seed", default=0, show_default=True)
def train(data_dir, output, arch, channels, filters, blocks, resolutions, key, value, residual, skip, layers, lpc_cross,
          mixtures, steps,
          batch, crop, lr, lr_decay, threads, val_files, val_dir, val_crops, init, average, noise, checkpoint, checkpoint_every, seed):
    """Train a model on a folder of images (PixelCNN++) or recordings (WaveNet) and write an
    exact model file.

    The last files (sorted by name) are held out whole for validation. Stop at any time:
    rerunning the same command resumes from the checkpoint.
    """
    from pathlib import Path

    from .audiofile import AUDIO_SUFFIXES
    from .train import IMAGE_SUFFIXES

    if api.Path(output).exists():
        raise click.ClickException(f"{output}: already exists")
    if arch == "auto":
        suffixes = {p.suffix.lower() for p in Path(data_dir).rglob("*")}
        arch = "wavenet" if suffixes & AUDIO_SUFFIXES and not suffixes & IMAGE_SUFFIXES else "pixelcnn"
    try:
        if noise < 0:
            raise ValueError("--noise must be 0 or more (levels)")
        if arch == "wavenet" and noise:
            raise ValueError("--noise applies to image training only")
        if arch == "wavenet":
            from .train_audio import AudioTrainOptions, train_audio
            from .wavenet import WaveNetConfig

            cfg = WaveNetConfig.from_dict(dict(residual=residual, skip=skip, layers=layers, mixtures=mixtures or 4,
                                               lpc_cross=lpc_cross))
            opts = AudioTrainOptions(steps=steps, batch=batch or 8, crop=crop or 4096, lr=lr, lr_decay=lr_decay,
                                     threads=threads, val_files=val_files, checkpoint_every=checkpoint_every,
                                     seed=seed, average=average)
            r = train_audio(data_dir, output, cfg, opts, checkpoint=checkpoint, val_dir=val_dir, log=click.echo,
                            init=init)
            click.echo(f"wrote {output}: validation {r['val_bits']:.4f} bits/sample (float model) "
                       f"after {r['steps']} steps")
            return
        from .multires import MultiResConfig
        from .pixelcnn import PixelCNNConfig
        from .pixelsnail import PixelSNAILConfig
        from .train import TrainOptions, train as run

        shape = dict(channels=int(channels), filters=filters, blocks=blocks, mixtures=mixtures or 5)
        if arch == "pixelsnail":
            cfg = PixelSNAILConfig.from_dict({**shape, "key": key, "value": value})
        elif arch == "multires":
            cfg = MultiResConfig.from_dict({**shape, "resolutions": resolutions})
        else:
            cfg = PixelCNNConfig(**shape)
        opts = TrainOptions(steps=steps, batch=batch or 16, crop=crop or 32, lr=lr, lr_decay=lr_decay,
                            threads=threads, val_images=val_files, checkpoint_every=checkpoint_every, seed=seed,
                            val_crops=val_crops, average=average, noise=noise)
        r = run(data_dir, output, cfg, opts, checkpoint=checkpoint, log=click.echo, init=init)
    except (ValueError, OSError) as e:
        _fail(str(e))
        sys.exit(1)
    click.echo(f"wrote {output}: validation {r['val_bpsp']:.4f} bits/sub-pixel (float model) after {r['steps']} steps")


if __name__ == "__main__":
    main()
