"""The byte tokenizer: ids 0..255 are the UTF-8 bytes of the text, special tokens follow.

The simplest tokenizer that can represent any text: no training, no merges, a vocabulary of 256 + specials. It
has the same interface as BPETokenizer (`kind = "byte"`, `vocab`, `merges` (empty), `pattern` (None), `encode`,
`decode`, `encode_batch`, `token_bytes`) so every later stage takes either. Its tokenizer.json is a BPE model with
the 256 byte tokens and no merges, which `tokenizers` encodes identically (tests/tokenizer/test_byte.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from llmfs.tokenizer.encoder import utf8
from llmfs.tokenizer.patterns import special_splitter
from llmfs.tokenizer.table import TableDecoder
from llmfs.tokenizer.specials import AllowedSpecial, check_specials, encode_with_specials



class ByteTokenizer(TableDecoder):
    """UTF-8 bytes as ids; `special_tokens` take ids 256, 257, ..."""

    kind = "byte"
    pattern = None

    def __init__(self, special_tokens: Sequence[str] = ("<|endoftext|>",)):
        specials = check_specials(tuple(special_tokens))
        self.vocab = [bytes([i]) for i in range(256)]
        self.merges: list[tuple[int, int, int]] = []
        self.special_tokens = {s: 256 + i for i, s in enumerate(specials)}
        self.vocab_size = 256 + len(specials)
        self._specials_re = special_splitter(specials)
        self._table = self.vocab + [s.encode("utf-8") for s in specials]

    @property
    def eot_id(self) -> int | None:
        """Id of `<|endoftext|>`, else of the first special token, else None."""
        if "<|endoftext|>" in self.special_tokens:
            return self.special_tokens["<|endoftext|>"]
        return next(iter(self.special_tokens.values()), None)

    def encode_ordinary(self, text: str) -> list[int]:
        return list(utf8(text))

    def encode(self, text: str, allowed_special: AllowedSpecial = "none") -> list[int]:
        """UTF-8 bytes of `text`; allowed special tokens spelled in it become their ids."""
        return encode_with_specials(text, allowed_special, self.special_tokens, self._specials_re,
                                    self.encode_ordinary)

    def encode_batch(self, texts: Sequence[str], allowed_special: AllowedSpecial = "none") -> list[list[int]]:
        """Same as `encode` per text: encoding to bytes already runs in C, so no `tokenizers` round trip."""
        return [self.encode(t, allowed_special) for t in texts]

