"""Benchmarks (`make bench`). Each `bench_<area>.py` returns a Markdown section for BENCHMARKS.md."""
