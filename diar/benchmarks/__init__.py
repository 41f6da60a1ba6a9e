"""Benchmarks run by `diar bench NAME`: each module has a `main(argv) -> int` that prints figures."""
