"""Benchmarks (`llmfs bench ...`): each module has `run(...)` and a `python -m` entry point."""
