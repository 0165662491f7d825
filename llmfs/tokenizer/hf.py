"""tokenizer.json interop with Hugging Face `tokenizers`: export, load back, and the fast bulk encoder.

The file is the one `tokenizers.Tokenizer.from_file` reads (tests/tokenizer/test_parity.py checks that it encodes
and decodes exactly as llmfs does):
- model: BPE over GPT-2's byte-level alphabet (`bytes_to_unicode`: each byte is shown as one printable
  character, so token strings are valid JSON and merges are pairs of such strings);
- pre_tokenizer: Sequence[Split(our pattern, behavior "Isolated"), ByteLevel(add_prefix_space=False,
  use_regex=False)]: the Split does the pre-tokenization (Oniguruma runs the same pattern), ByteLevel only maps
  bytes to the alphabet. GPT-2's own file uses ByteLevel(use_regex=True), which hard-codes the GPT-2 pattern;
  the explicit Split lets the GPT-4 pattern be used too. The byte tokenizer has no Split: one pre-token, no merges;
- decoder: ByteLevel (characters back to bytes, invalid UTF-8 -> U+FFFD);
- special tokens: `added_tokens` with special=true, normalized=false, ids after the vocab.
Next to it, `vocab.json` and `merges.txt` are the same vocabulary in GPT-2's two-file format, for reading.

`load` reads back only files with exactly this structure (what `save` writes); anything else is a DataError
that names the file and the part that differs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmfs.atomic import write_text_atomic
from llmfs.errors import DataError
from llmfs.tokenizer.patterns import PATTERNS

TOKENIZER_FILE = "tokenizer.json"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> character map (openai/gpt-2 encoder.py): printable Latin-1 bytes map to themselves, the
    other 68 (control characters, space, ...) to U+0100 onwards in byte order. So ' ' -> 'Ġ', '\\n' -> 'Ċ'."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in keep}
    n = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + n)
            n += 1
    return dict(sorted(chars.items()))


def _token_str(b: bytes, table: dict[int, str]) -> str:
    return "".join(table[x] for x in b)


def to_json(tok) -> dict[str, Any]:
    """The tokenizer.json document for an llmfs tokenizer (BPETokenizer or ByteTokenizer)."""
    table = bytes_to_unicode()
    vocab = {_token_str(b, table): i for i, b in enumerate(tok.vocab)}
    merges = [[_token_str(tok.vocab[a], table), _token_str(tok.vocab[b], table)] for a, b, _ in tok.merges]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    if tok.pattern is None:
        pre_tokenizer: dict[str, Any] = byte_level
    else:
        split = {"type": "Split", "pattern": {"Regex": PATTERNS[tok.pattern]}, "behavior": "Isolated",
                 "invert": False}
        pre_tokenizer = {"type": "Sequence", "pretokenizers": [split, byte_level]}
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": True} for s, i in tok.special_tokens.items()]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": pre_tokenizer, "post_processor": None, "decoder": dict(byte_level),
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


def to_hf(tok):
    """A `tokenizers.Tokenizer` equivalent to `tok`."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(json.dumps(to_json(tok), ensure_ascii=False))


def fast_encode_batch(hf, texts: Sequence[str], allowed_special) -> list[list[int]]:
    """`encode_batch` on the `tokenizers` twin. "all": special tokens in text are recognised (the `tokenizers`
    default); "none": `encode_special_tokens=True` makes it encode them as plain text, like llmfs."""
    if allowed_special not in ("all", "none"):
        raise ValueError("the fast path supports allowed_special='all' or 'none'; use encode() for a subset")
    hf.encode_special_tokens = allowed_special == "none"
    return [e.ids for e in hf.encode_batch(list(texts), add_special_tokens=False)]


def save(tok, directory: str | Path) -> str:
    """Write tokenizer.json, vocab.json and merges.txt (and chat_template.jinja when the tokenizer has the chat
    tokens) into `directory` (created); returns the sha256 of tokenizer.json, the tokenizer's identity in
    checkpoints and shard indexes."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    doc = to_json(tok)
    text = json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    # each file replaced whole (write beside, fsync, rename): an interrupted save never leaves a torn tokenizer.json
    write_text_atomic(out / TOKENIZER_FILE, text)
    write_text_atomic(out / "vocab.json", json.dumps(doc["model"]["vocab"], ensure_ascii=False, indent=0) + "\n")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in doc["model"]["merges"]]  # GPT-2's merges.txt format
    write_text_atomic(out / "merges.txt", "\n".join(lines) + "\n")
    from llmfs.tokenizer.chat import CHAT_TEMPLATE_JINJA, TEMPLATE_FILE, has_chat_tokens

    if has_chat_tokens(tok):  # the chat template travels with the tokenizer that has its tokens
        write_text_atomic(out / TEMPLATE_FILE, CHAT_TEMPLATE_JINJA + "\n")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tokenizer_file(path: str | Path) -> Path:
    """`path` if it is a file, else `path/tokenizer.json`; DataError when missing."""
    p = Path(path)
    f = p / TOKENIZER_FILE if p.is_dir() else p
    if not f.is_file():
        raise DataError(f"{f}: tokenizer file not found; pass a directory written by 'llmfs tokenize train-bpe'")
    return f


def sha256(path: str | Path) -> str:
    return hashlib.sha256(tokenizer_file(path).read_bytes()).hexdigest()


def load(path: str | Path):
    """Read a tokenizer.json written by llmfs (a directory or the file) back into a BPETokenizer or
    ByteTokenizer. Refuses any other format with a one-line DataError naming the file."""
    from llmfs.tokenizer.byte import ByteTokenizer
    from llmfs.tokenizer.encoder import BPETokenizer

    f = tokenizer_file(path)
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{f}: not a JSON tokenizer file ({e}); pass a tokenizer written by llmfs") from None

    def refuse(why: str) -> DataError:
        return DataError(f"{f}: not an llmfs byte-level BPE tokenizer ({why}); "
                         "train one with 'llmfs tokenize train-bpe'")

    if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
        raise refuse("no 'model' section")
    model = doc["model"]
    if model.get("type") != "BPE":
        raise refuse(f"model type is {model.get('type')!r}, expected 'BPE'")
    if doc.get("normalizer") is not None:
        raise refuse("it has a normalizer")
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    pre = doc.get("pre_tokenizer")
    if pre == byte_level:
        pattern = None
    elif (isinstance(pre, dict) and pre.get("type") == "Sequence" and len(pre.get("pretokenizers", [])) == 2
          and pre["pretokenizers"][1] == byte_level and pre["pretokenizers"][0].get("type") == "Split"
          and pre["pretokenizers"][0].get("behavior") == "Isolated"):
        regex_text = pre["pretokenizers"][0].get("pattern", {}).get("Regex")
        names = [n for n, p in PATTERNS.items() if p == regex_text]
        if not names:
            raise refuse(f"split pattern {regex_text!r} is not one of llmfs's ({', '.join(PATTERNS)})")
        pattern = names[0]
    else:
        raise refuse("pre_tokenizer is not llmfs's Split + ByteLevel(use_regex=false)")
    if doc.get("decoder", {}) is None or doc.get("decoder", {}).get("type") != "ByteLevel":
        raise refuse("decoder is not ByteLevel")

    char_byte = {c: b for b, c in bytes_to_unicode().items()}
    vocab_map = model.get("vocab", {})
    by_id = sorted((i, s) for s, i in vocab_map.items())
    if [i for i, _ in by_id] != list(range(len(by_id))) or len(by_id) < 256:
        raise refuse("vocab ids are not 0..N-1 with the 256 bytes")
    try:
        vocab = [bytes(char_byte[c] for c in s) for _, s in by_id]
    except KeyError as e:
        raise refuse(f"vocab has a character outside the byte-level alphabet: {e.args[0]!r}") from None
    if vocab[:256] != [bytes([b]) for b in range(256)]:
        raise refuse("ids 0..255 are not the bytes in order")
    merges = []
    for pair in model.get("merges", []):
        a, b = pair if isinstance(pair, list) else pair.split(" ", 1)  # older files write "a b" strings
        if a not in vocab_map or b not in vocab_map or a + b not in vocab_map:
            raise refuse(f"merge {a!r} {b!r} refers to tokens outside the vocab")
        merges.append((vocab_map[a], vocab_map[b], vocab_map[a + b]))
    added = sorted(doc.get("added_tokens", []), key=lambda t: t["id"])
    if [t["id"] for t in added] != list(range(len(vocab), len(vocab) + len(added))) or \
            not all(t.get("special") for t in added):
        raise refuse("added_tokens are not special tokens numbered after the vocab")
    specials = [t["content"] for t in added]
    if pattern is None:
        if merges or len(vocab) != 256:
            raise refuse("a byte tokenizer has 256 tokens and no merges")
        return ByteTokenizer(specials)
    return BPETokenizer(vocab, merges, specials, pattern)
