"""Benchmarks for smh-async (run with ``make bench`` or ``python -m benchmarks``)."""
