"""Corpus statistics for `llmfs data stats`: is this corpus what I think it is, or accidentally degenerate?

Reports size (records, characters, UTF-8 bytes, words), vocabulary (distinct lower-cased words), sentence
lengths in words, and duplicate rates: the fraction of sentences that repeat an earlier sentence exactly, and
the same for whole records. A grammar-generated corpus whose duplicate-sentence rate climbs towards 1 teaches a
model to recite, not to write.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])|\n+")
_WORD = re.compile(r"[A-Za-z']+|\d+")


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
    for record in records:
        text = record_text(record)
        n_records += 1
        chars += len(text)
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
    }
