"""Inputs of the stored golden files (tests/data/golden_*.arc), from integer formulas only, so
that every machine makes the same arrays.  ``python tests/golden.py [NAME...]`` writes the
named files (all without names) again: only when the format is meant to change, or for a new
case; test_golden then pins the new one.  The first five were written in format 10, ``noise16``
in format 11 (its streams verbatim), ``noise_rgb`` in format 12 (uniform tiles),
``calibrated_rgb`` in format 13 (a calibration of the model's outputs, zigzag varints),
``calibrated_rgb_coded`` in format 14 (Rice-coded, with shifts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"


def _noise(n: int, seed: int) -> np.ndarray:
    """n integers in 0 .. 2**16 - 1 from a 32-bit linear congruential generator."""
    out, x = np.empty(n, np.int64), seed
    for i in range(n):
        x = (1103515245 * x + 12345) % (1 << 31)
        out[i] = x >> 15
    return out


def rgb() -> np.ndarray:
    """(14, 20, 3) uint8: ramps, a product term and noise, a saturated corner."""
    y, x = np.mgrid[:14, :20].astype(np.int64)
    n = _noise(14 * 20 * 3, 1).reshape(14, 20, 3) % 9
    r = (11 * x + 7 * y + (x * y) % 13) % 256
    img = np.stack([r, (r + 3 * x) % 256, (255 - r + y) % 256], -1) + n - 4
    img[:3, :3] = 255
    return img.clip(0, 255).astype(np.uint8)


def gray() -> np.ndarray:
    """(7, 9) uint8."""
    y, x = np.mgrid[:7, :9].astype(np.int64)
    return ((29 * x + 3 * y * y + _noise(63, 2).reshape(7, 9) % 5) % 256).astype(np.uint8)


def _wave(n: int, period: int, amp: int, seed: int) -> np.ndarray:
    t = np.arange(n, dtype=np.int64)
    tri = np.abs((t % period) * 2 * amp // period - amp) * 2 - amp  # a triangle wave
    return tri + _noise(n, seed) % 257 - 128


def stereo16() -> np.ndarray:
    """(1200, 2) int16 at 44.1 kHz: a triangle wave plus noise, the second channel close to the first."""
    a = _wave(1200, 100, 9000, 3)
    b = a // 2 + _noise(1200, 4) % 65 - 32
    return np.stack([a, b], 1).astype(np.int16)


def speech8k() -> np.ndarray:
    """(1500, 1) int16 at 8 kHz."""
    return _wave(1500, 37, 3000, 5).astype(np.int16).reshape(-1, 1)


def mono24() -> np.ndarray:
    """(1000, 1) int32 holding 24-bit samples at 48 kHz."""
    return (_wave(1000, 160, 100_000, 6) * 64 + _noise(1000, 7) % 256).astype(np.int32).reshape(-1, 1)


def noise16() -> np.ndarray:
    """(600, 2) int16 at 16 kHz: full-scale white noise (format 11 codes it verbatim)."""
    return (_noise(1200, 8) - 32768).reshape(600, 2).astype(np.int16)


def noise_rgb() -> np.ndarray:
    """(12, 10, 3) uint8: white noise on the levels 0..254 (format 12 codes it in uniform tiles,
    with level sets)."""
    return (_noise(360, 9) % 255).reshape(12, 10, 3).astype(np.uint8)


def calibrated_rgb() -> np.ndarray:
    """(10, 12, 3) uint8: smooth ramps and noise, written with FORCED_CALIBRATIONS' values (the
    encoder's own fit would not pay for its field on so small an image)."""
    y, x = np.mgrid[:10, :12].astype(np.int64)
    n = _noise(360, 10).reshape(10, 12, 3) % 7
    return (np.stack([40 + 9 * x + 3 * y, 200 - 5 * x - 4 * y, 100 + 2 * x * y % 50], -1).clip(0, 249) + n).astype(np.uint8)


#: name -> the (gains, offsets) its file is written with, from the model's parameter count
FORCED_CALIBRATIONS = {
    "calibrated_rgb": lambda n: (tuple((37 * i) % 201 - 100 for i in range(n)),
                                 tuple((53 * i) % 121 - 60 for i in range(n))),
    "calibrated_rgb_coded": lambda n: (tuple(16 * ((37 * i) % 201 - 100) for i in range(n)),
                                       tuple(4 * ((53 * i) % 1201 - 600) for i in range(n))),
}


#: name -> (array, sample rate or None for images, bits)
CASES = {
    "rgb": (rgb, None, 8),
    "gray": (gray, None, 8),
    "stereo16": (stereo16, 44100, 16),
    "speech8k": (speech8k, 8000, 16),
    "mono24": (mono24, 48000, 24),
    "noise16": (noise16, 16000, 16),
    "noise_rgb": (noise_rgb, None, 8),
    "calibrated_rgb": (calibrated_rgb, None, 8),
    "calibrated_rgb_coded": (calibrated_rgb, None, 8),
}


def path(name: str) -> Path:
    return DATA / f"golden_{name}.arc"


def write(names: list[str]) -> None:
    import arcompress
    from arcompress import api, calibration
    DATA.mkdir(exist_ok=True)
    fit = calibration.fit
    for name in names:
        make, rate, bits = CASES[name]
        arr = make()
        if name in FORCED_CALIBRATIONS:
            calibration.fit = lambda params, tiles, inside, shifts=None: calibration.Calibration(
                *FORCED_CALIBRATIONS[name](params.shape[1]))
        try:
            data = arcompress.compress(arr) if rate is None else api.compress_audio(arr, rate, bits)
        finally:
            calibration.fit = fit
        path(name).write_bytes(data)
        print(f"{path(name)}: {len(data)} bytes")


if __name__ == "__main__":
    import sys
    write(sys.argv[1:] or list(CASES))
