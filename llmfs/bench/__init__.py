"""Benchmarks behind `llmfs bench`: each suite is a module with a function returning rows and a `main()`."""
