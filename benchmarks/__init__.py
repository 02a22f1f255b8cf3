"""Benchmarks, run by name (``python -m benchmarks.bench_produce``), not by pytest."""
