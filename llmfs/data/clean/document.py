"""The per-document steps, run in worker processes: normalise -> quality -> repetition -> PII -> dedup keys.

Everything here depends on one document only, so any number of workers gives the same results; the decisions
that need the whole stream (is this a duplicate of a document kept earlier?) are taken in the main process by
dedup.Deduplicator, in input order. Dedup keys are computed on the normalised text before PII masking, so two
copies of a page that differ only in an e-mail address are still duplicates.
"""

from __future__ import annotations

from typing import NamedTuple

from llmfs.data.clean.config import CleanConfig
from llmfs.data.clean.dedup import MinHasher, band_keys, exact_key
from llmfs.data.clean.inputs import Document
from llmfs.data.clean.normalize import normalize
from llmfs.data.clean.pii import mask
from llmfs.data.clean.quality import quality_reason, words
from llmfs.data.clean.repetition import repetition_reason


class Outcome(NamedTuple):
    reason: str | None     # why the document is dropped, or None: it goes on to dedup
    text: str              # normalised text (dropped.jsonl holds this)
    masked: str            # normalised and PII-masked text (what every output file holds)
    pii: dict[str, int]    # replacements per type
    key: bytes             # exact-dedup digest ("" when dropped)
    signature: bytes       # MinHash signature ("" when dropped or near dedup is off)
    bands: tuple[int, ...]


class DocumentSteps:
    """`DocumentSteps(cfg)(document) -> Outcome`; picklable for multiprocessing (the MinHasher is rebuilt in
    each process from the seed)."""

    def __init__(self, cfg: CleanConfig):
        self.cfg = cfg
        self._hasher: MinHasher | None = None

    def __getstate__(self) -> dict:
        return {"cfg": self.cfg}

    def __setstate__(self, state: dict) -> None:
        self.cfg, self._hasher = state["cfg"], None

    def __call__(self, doc: Document) -> Outcome:
        cfg = self.cfg
        text = normalize(doc.text, cfg.normalize, html=doc.html)
        reason = "empty" if len(text.strip()) < max(cfg.min_chars, 1) else None
        ws = words(text) if reason is None and (cfg.quality.enabled or cfg.repetition.enabled) else None
        reason = reason or quality_reason(text, cfg.quality, ws) or repetition_reason(text, cfg.repetition, ws)
        masked, pii = mask(text, cfg.pii.types) if cfg.pii.enabled else (text, {})
        if reason is not None:  # dropped documents are masked too: dropped.jsonl and report examples get shared
            return Outcome(reason, text, masked, {}, b"", b"", ())
        signature, bands = b"", ()
        if cfg.dedup.near:
            if self._hasher is None:
                d = cfg.dedup
                self._hasher = MinHasher(d.num_perm, d.shingle_size, d.seed)
            signature = self._hasher.signature(text)
            bands = band_keys(signature, cfg.dedup.bands)
        return Outcome(None, text, masked, pii, exact_key(text), signature, bands)
