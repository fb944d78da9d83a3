"""Benchmarks against reference codes (not part of the installed segsim package)."""
