"""`llmfs data clean`: raw text -> a normalised, filtered, deduplicated, PII-masked corpus and a report.

config.py ([clean] recipe section), inputs.py (documents of the inputs), normalize.py, quality.py and
repetition.py (Gopher heuristics), dedup.py (exact hash, MinHash + LSH), pii.py (masking), document.py (the
per-document steps a worker runs), state.py (resume), report.py, pipeline.py (`run`).
"""
