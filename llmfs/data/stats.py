"""Corpus statistics for `llmfs data stats`: is this corpus what I think it is, or accidentally degenerate?

Reports size (records, characters, UTF-8 bytes, words), vocabulary (distinct lower-cased words), sentence
lengths in words, duplicate rates (the fraction of sentences that repeat an earlier sentence exactly, and the
same for whole records) and the character mix by script class. A grammar-generated corpus whose
duplicate-sentence rate climbs towards 1 teaches a model to recite, not to write; a mix with an unexpected share
of `other` or `cjk` is the wrong language, mojibake or binary junk.

Script classes (`SCRIPTS`, checked in order, so a character counts once): whitespace, digits (ASCII 0-9),
latin, cyrillic, greek, arabic, cjk (Han, kana, Hangul), punctuation (ASCII punctuation and symbols plus the
General Punctuation block); everything else (emoji, other scripts, other digits) is `other`.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])|\n+")
_WORD = re.compile(r"[A-Za-z']+|\d+")
SCRIPTS = {  # class -> character ranges (a regex class body); reasons and order in the module docstring
    "whitespace": r"\s",
    "digits": r"0-9",
    "latin": r"A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff",
    "cyrillic": r"\u0400-\u052f",
    "greek": r"\u0370-\u03ff\u1f00-\u1fff",
    "arabic": r"\u0600-\u06ff\u0750-\u077f",
    "cjk": r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff",
    "punctuation": r"!-/:-@\[-`{-~\u00a1-\u00bf\u00d7\u00f7\u2000-\u206f",
}
_SCRIPT_RE = {name: re.compile(f"[{body}]+") for name, body in SCRIPTS.items()}


def script_counts(text: str) -> dict[str, int]:
    """Characters of `text` per script class (`SCRIPTS`, then `other`); the counts sum to len(text)."""
    counts = {}
    for name, pattern in _SCRIPT_RE.items():
        counts[name] = sum(map(len, pattern.findall(text)))
    counts["other"] = len(text) - sum(counts.values())
    return counts


def record_text(record: Mapping[str, Any] | str) -> str:
    """The text of any record kind: `text`, a `messages` list, or `prompt` / `chosen` / `rejected`."""
    if isinstance(record, str):
        return record
    if "text" in record:
        return str(record["text"])
    parts: list[str] = []
    for key in ("messages", "prompt"):
        value = record.get(key)
        if isinstance(value, list):
            parts += [str(m.get("content", "")) for m in value if isinstance(m, Mapping)]
        elif value is not None:
            parts.append(str(value))
    parts += [str(record[k]) for k in ("chosen", "rejected") if k in record]
    return "\n".join(parts)


def corpus_stats(records: Iterable[Mapping[str, Any] | str]) -> dict[str, Any]:
    n_records = chars = n_bytes = n_words = 0
    vocab: set[str] = set()
    sentence_lengths: list[int] = []
    seen_sentences: set[str] = set()
    seen_records: set[str] = set()
    dup_sentences = dup_records = 0
    scripts = dict.fromkeys([*SCRIPTS, "other"], 0)
    for record in records:
        text = record_text(record)
        n_records += 1
        chars += len(text)
        for name, count in script_counts(text).items():
            scripts[name] += count
        n_bytes += len(text.encode("utf-8"))
        if text in seen_records:
            dup_records += 1
        seen_records.add(text)
        for sentence in _SENTENCE_END.split(text):
            sentence = sentence.strip()
            if not sentence:
                continue
            words = _WORD.findall(sentence)
            n_words += len(words)
            vocab.update(w.lower() for w in words)
            sentence_lengths.append(len(words))
            if sentence in seen_sentences:
                dup_sentences += 1
            seen_sentences.add(sentence)
    n_sent = len(sentence_lengths)
    return {
        "records": n_records, "characters": chars, "bytes": n_bytes, "words": n_words,
        "vocabulary": len(vocab), "sentences": n_sent,
        "sentence_words_mean": round(statistics.fmean(sentence_lengths), 2) if n_sent else 0.0,
        "sentence_words_median": statistics.median(sentence_lengths) if n_sent else 0,
        "sentence_words_max": max(sentence_lengths, default=0),
        "duplicate_sentence_rate": round(dup_sentences / n_sent, 4) if n_sent else 0.0,
        "duplicate_record_rate": round(dup_records / n_records, 4) if n_records else 0.0,
        "script_mix": {name: round(count / chars, 4) for name, count in scripts.items() if count} if chars else {},
    }


def stats_input(source: str, *, kind: str | None = None, fields: Mapping[str, str] | None = None,
                split: str = "train", seed: int = 0, cache_dir: str | Path | None = None) -> Iterable:
    """What `llmfs data stats SOURCE` measures. Without `kind`: a built-in source's own records, otherwise text
    documents (text files, folders, tables and hub datasets with their text in `fields["text"]`). With `kind`
    (a key of records.RECORD_KINDS): records that must hold that kind's fields, read by `iter_records`."""
    from llmfs.data.records import RECORD_KINDS, iter_records
    from llmfs.data.tables import check_local_split, expand, is_local

    fields = dict(fields or {})
    if kind is not None and kind not in RECORD_KINDS:
        from llmfs.errors import DataError

        raise DataError(f"--kind {kind}: use one of {', '.join(RECORD_KINDS)}")
    if kind is None and source.startswith("builtin:"):
        from llmfs.data.builtin import iter_builtin

        return iter_builtin(source, split=split, seed=seed)
    if kind in (None, "text") and not source.startswith("builtin:") and is_local(expand(source)[0]):
        from llmfs.data.sources import iter_documents

        check_local_split(source, split)  # local text has no splits; never measure "train" under another name
        return iter_documents([source], field=fields.pop("text", "text"), cache_dir=cache_dir,
                              hint="--field {column}")
    return iter_records(source, required=RECORD_KINDS[kind or "text"], fields=fields, split=split, seed=seed,
                        cache_dir=cache_dir, hint="--field {name}={column}")
