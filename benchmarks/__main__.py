"""``python -m benchmarks`` runs the whole benchmark (see benchmarks/README.md)."""

from benchmarks.run import main

main()
