"""Benchmarks: ``python -m benchmarks run [--quick]`` (see benchmarks/images.py)."""
