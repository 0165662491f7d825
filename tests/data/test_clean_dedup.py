"""Exact and MinHash + LSH near-duplicate detection (llmfs/data/clean/dedup.py), fixed seeds."""

from __future__ import annotations

import dataclasses
import random

import pytest

from llmfs.data.clean.config import DedupConfig
from llmfs.data.clean.dedup import (Deduplicator, MinHasher, band_keys, estimated_jaccard, exact_key,
                                    lsh_threshold, shingles)

A = ("Once upon a time there was a little fox who lived at the edge of a green forest. Every morning the fox "
     "walked down to the river to drink and to watch the fish jump in the cold water. One day she met an old "
     "turtle sitting on a warm stone, and the turtle told her a story about the sea far away, where the water "
     "never ends and the birds fly all day long. The fox listened until the sun went down.")
B = ("The train left the station at seven in the evening, full of tired workers going home after a long day. "
     "A man in a grey coat read his newspaper while a child next to him counted the lamps outside the window. "
     "Rain began to fall as the train crossed the bridge, and the lights of the city slowly disappeared behind "
     "the hills. Nobody spoke until the conductor called the name of the last stop.")


C = ("My grandmother kept bees behind her house, in six white boxes under the apple trees. In summer she wore a "
     "hat with a veil and moved slowly between the hives, talking to the bees in a low voice. She said they "
     "needed to hear the news of the family, or they would leave. When I was small I believed her completely, "
     "and some evenings I still tell them what happened that day.")


def index(cfg: DedupConfig, doc: str) -> tuple[bytes, bytes, tuple[int, ...]]:
    sig = MinHasher(cfg.num_perm, cfg.shingle_size, cfg.seed).signature(doc)
    return exact_key(doc), sig, band_keys(sig, cfg.bands)


def exact_jaccard(a: str, b: str, n: int) -> float:
    x, y = shingles(a, n), shingles(b, n)
    return len(x & y) / len(x | y)


def test_few_changed_words_are_found_unrelated_documents_are_not():
    cfg = DedupConfig()
    dedup = Deduplicator(cfg)
    doc = A + " " + B  # about 150 words: three changed words touch up to 15 of its 146 five-word shingles
    dedup.add(*index(cfg, doc))
    near = doc.replace("little fox", "small fox").replace("cold water", "clear water").replace("old turtle",
                                                                                               "wise turtle")
    match = dedup.check(*index(cfg, near))
    assert match is not None and match.reason == "near_duplicate" and match.kept == 0
    assert abs(match.jaccard - exact_jaccard(doc, near, 5)) < 0.1
    assert dedup.check(*index(cfg, C)) is None and dedup.check(*index(cfg, A)) is None  # A is half of doc
    assert dedup.check(*index(cfg, doc)).reason == "exact_duplicate"
    assert Deduplicator(dataclasses.replace(cfg, near=False)).check(*index(cfg, near)) is None


def test_estimated_jaccard_tracks_exact_jaccard_on_sample_pairs():
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(400)]
    hasher = MinHasher(256, 3, seed=1)
    for _ in range(12):
        base = [rng.choice(vocab) for _ in range(120)]
        other = list(base)
        for i in rng.sample(range(120), rng.randrange(0, 60)):  # change up to half the words
            other[i] = rng.choice(vocab)
        a, b = " ".join(base), " ".join(other)
        est = estimated_jaccard(hasher.signature(a), hasher.signature(b))
        assert est == pytest.approx(exact_jaccard(a, b, 3), abs=0.1)  # std <= 0.5 / sqrt(256) = 0.03


def test_signatures_are_seeded_and_lsh_threshold_is_the_s_curve_midpoint():
    assert MinHasher(64, 5, 3).signature(A) == MinHasher(64, 5, 3).signature(A)
    assert MinHasher(64, 5, 3).signature(A) != MinHasher(64, 5, 4).signature(A)
    assert len(MinHasher(64, 5, 0).signature(A)) == 64 * 4
    assert lsh_threshold(DedupConfig()) == pytest.approx((1 / 16) ** (1 / 8))
    assert shingles("One two", 5) == {"one two"} and shingles("", 5) == set()


def test_first_seen_is_kept_and_best_match_reported():
    cfg = DedupConfig(threshold=0.5)
    dedup = Deduplicator(cfg)
    assert dedup.add(*index(cfg, A)) == 0 and dedup.add(*index(cfg, B)) == 1
    match = dedup.check(*index(cfg, B + " And then the train stopped."))
    assert match.kept == 1 and match.jaccard > 0.7
