"""The sections of ``python -m benchmarks`` and what they share (benchmarks/README.md describes them)."""
