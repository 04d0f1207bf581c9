"""The programs that race each other; each runs as its own process (see benchmarks/README.md)."""
