"""The byte-level BPE tokenizer: encode, decode, and a bulk path through `tokenizers`.

    text --specials--> [text | special]* --split pattern--> pre-tokens --UTF-8--> bytes --merges by rank--> ids

Ids: 0..255 are the bytes, then one id per learned merge (in rank order), then the special tokens. Merges are
applied inside each pre-token lowest rank first; applying all occurrences of the best pair left to right is
the same as `tokenizers`' one-at-a-time leftmost-lowest queue, because every pair that a merge creates contains
the new id and so has a higher rank.

Departures from the references:
- `decode` never raises: invalid UTF-8 becomes U+FFFD (as `tokenizers`' ByteLevel decoder does), and an id
  outside the vocabulary decodes to U+FFFD too, so the reader sees something was there (`tokenizers` drops
  unknown ids silently; tiktoken raises KeyError).
- Special tokens decode to their text (`tokenizers` skips them unless `skip_special_tokens=False`).
- Text that spells a special token is plain text unless the token is allowed (see `specials.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

from llmfs.tokenizer.patterns import compile_pattern, special_splitter
from llmfs.tokenizer.table import TableDecoder
from llmfs.tokenizer.specials import AllowedSpecial, check_specials, encode_with_specials

CACHE_LIMIT = 1 << 16  # pre-tokens kept in the per-instance cache before it is cleared (bounded memory)


def utf8(text: str) -> bytes:
    """UTF-8 bytes of `text`, never raising. Text made by `raw.decode("utf-8", "surrogateescape")` gives back
    exactly `raw` (U+DC80..U+DCFF stand for the undecodable bytes), so arbitrary bytes survive encode ->
    decode_bytes. Any other lone surrogate has no UTF-8 form; it is written as its 3-byte surrogate encoding
    ("surrogatepass"), which decodes to U+FFFD."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


class BPETokenizer(TableDecoder):
    """A trained byte-level BPE. Build with `train_bpe` (bpe.py) or `load` (hf.py).

    vocab:    id -> bytes for the byte and merge ids (len = 256 + number of merges, minus merges that re-spell
              an existing token)
    merges:   (a, b, new_id) in rank order
    specials: the special tokens, which take the ids after the vocab, in order
    pattern:  split pattern name ("gpt2" | "gpt4")
    """

    kind = "bpe"

    def __init__(self, vocab: Sequence[bytes], merges: Sequence[tuple[int, int, int]],
                 special_tokens: Sequence[str], pattern: str):
        self.vocab = list(vocab)
        self.merges = [tuple(m) for m in merges]
        self.pattern = pattern
        specials = check_specials(tuple(special_tokens))
        self.special_tokens = {s: len(self.vocab) + i for i, s in enumerate(specials)}
        self.vocab_size = len(self.vocab) + len(self.special_tokens)
        self._ranks = {(a, b): (r, z) for r, (a, b, z) in enumerate(self.merges)}
        self._split = compile_pattern(pattern)
        self._specials_re = special_splitter(tuple(self.special_tokens))
        self._table = self.vocab + [s.encode("utf-8") for s in self.special_tokens]  # id -> bytes, all ids
        self._cache: dict[str, list[int]] = {}
        self._hf = None  # the `tokenizers` twin, built on first `encode_batch`

    def __getstate__(self) -> dict:
        """What crosses to a worker process (multiprocessing): no pre-token cache, no `tokenizers` twin."""
        return {**self.__dict__, "_cache": {}, "_hf": None}

    # ------------------------------------------------------------------------------------------ encode
    @property
    def eot_id(self) -> int | None:
        """Id of `<|endoftext|>`, else of the first special token, else None."""
        if "<|endoftext|>" in self.special_tokens:
            return self.special_tokens["<|endoftext|>"]
        return next(iter(self.special_tokens.values()), None)

    def _bpe(self, piece: str) -> list[int]:
        ids = list(utf8(piece))
        ranks = self._ranks
        while len(ids) > 1:
            best = None
            for p in zip(ids, ids[1:]):
                rz = ranks.get(p)
                if rz is not None and (best is None or rz[0] < best[0]):
                    best, pair = rz, p
            if best is None:
                break
            a, b = pair
            z = best[1]
            out: list[int] = []
            i, n = 0, len(ids)
            while i < n:
                if i < n - 1 and ids[i] == a and ids[i + 1] == b:
                    out.append(z)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            ids = out
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of `text` with no special-token handling at all."""
        cache = self._cache
        out: list[int] = []
        for piece in self._split.findall(text):
            ids = cache.get(piece)
            if ids is None:
                if len(cache) >= CACHE_LIMIT:
                    cache.clear()
                ids = cache[piece] = self._bpe(piece)
            out.extend(ids)
        return out

    def encode(self, text: str, allowed_special: AllowedSpecial = "none") -> list[int]:
        """Ids of `text`. Special tokens spelled in the text become their ids only if allowed ("all", "none",
        or a collection of tokens); otherwise they are encoded as ordinary text."""
        return encode_with_specials(text, allowed_special, self.special_tokens, self._specials_re,
                                    self.encode_ordinary)

    def encode_batch(self, texts: Sequence[str], allowed_special: AllowedSpecial = "none") -> list[list[int]]:
        """Ids of many texts through the `tokenizers` backend (Rust, multi-threaded), for callers that hold many
        texts at once; on a 2-core machine the cached Python `encode` was faster (docs/bench/tokenizer.md), on
        many cores this path scales with threads. Identical to `encode`
        (tests/tokenizer/test_parity.py). `allowed_special` must be "all" or "none" here, and the texts valid
        Unicode (`tokenizers` refuses lone surrogates; `encode` accepts them, see `utf8`)."""
        from llmfs.tokenizer.hf import fast_encode_batch

        if self._hf is None:
            from llmfs.tokenizer.hf import to_hf
            self._hf = to_hf(self)
        return fast_encode_batch(self._hf, texts, allowed_special)

    # ------------------------------------------------------------------------------------------ decode
