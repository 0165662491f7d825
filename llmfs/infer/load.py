"""Load a causal LM and its tokenizer from a checkpoint (or run) directory, ready to generate.

The tokenizer: an llmfs tokenizer.json (what `llmfs tokenize` and pretraining write) loads as the llmfs
tokenizer. A checkpoint imported from `transformers` (`llmfs import hf`) carries that model's tokenizer.json;
when it is byte-level BPE (GPT-2, Llama 3, ...) it is wrapped in `ByteLevelTokenizer` below: `tokenizers`
encodes, and the byte table that `StreamingDecoder` needs is read from its vocabulary. Anything else is a
DataError naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from llmfs import checkpoint as ck
from llmfs.config import from_dict
from llmfs.errors import CheckpointError, DataError
from llmfs.model.config import ModelConfig
from llmfs.tokenizer.table import TableDecoder


def load_model(path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype | None = None):
    """(model in eval mode, tokenizer, Checkpoint) from a causal_lm checkpoint or run directory."""
    from llmfs.model.transformer import Transformer

    ckpt = ck.open_checkpoint(path)
    if ckpt.kind != "causal_lm":
        raise CheckpointError(f"{ckpt.path}: is a '{ckpt.kind}' checkpoint; generation needs a causal_lm one")
    cfg = from_dict(ModelConfig, dict(ckpt.model_config), source=str(ckpt.path / ck.CONFIG_FILE))
    model = Transformer(cfg)
    ck.load_weights(ckpt, model)
    model.to(device=device, dtype=dtype).eval()
    return model, load_tokenizer(ckpt.tokenizer_path), ckpt


def load_tokenizer(path: str | Path):
    """An llmfs tokenizer, or a `ByteLevelTokenizer` for another byte-level BPE tokenizer.json."""
    from llmfs.tokenizer.hf import load

    try:
        return load(path)
    except DataError as ours:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        if (doc.get("decoder") or {}).get("type") != "ByteLevel" or (doc.get("model") or {}).get("type") != "BPE":
            raise DataError(f"{path}: generation needs a byte-level BPE tokenizer.json ({ours})") from None
        return ByteLevelTokenizer(path)


class ByteLevelTokenizer(TableDecoder):
    """A byte-level BPE tokenizer.json from elsewhere: `tokenizers` encodes, the byte table decodes."""

    def __init__(self, path: str | Path):
        from tokenizers import Tokenizer

        from llmfs.tokenizer.hf import bytes_to_unicode

        self._hf = Tokenizer.from_file(str(path))
        char_byte = {c: b for b, c in bytes_to_unicode().items()}
        specials = {t.content for t in self._hf.get_added_tokens_decoder().values() if t.special}
        vocab = self._hf.get_vocab(with_added_tokens=True)  # token -> id
        self._table = [b""] * (max(vocab.values()) + 1)
        for token, i in vocab.items():
            special = token in specials or any(c not in char_byte for c in token)
            self._table[i] = token.encode("utf-8") if special else bytes(char_byte[c] for c in token)
        self.special_tokens = {s: vocab[s] for s in sorted(specials, key=vocab.get)}
        self.vocab_size = len(self._table)

    @property
    def eot_id(self) -> int | None:
        """`<|endoftext|>` if present, else the first special token (what `llmfs export hf` calls eos)."""
        if "<|endoftext|>" in self.special_tokens:
            return self.special_tokens["<|endoftext|>"]
        return next(iter(self.special_tokens.values()), None)

    def encode(self, text: str, allowed_special: str = "all") -> list[int]:
        if allowed_special not in ("all", "none"):
            raise ValueError("allowed_special must be 'all' or 'none' for a tokenizers-backed tokenizer")
        self._hf.encode_special_tokens = allowed_special == "none"
        return self._hf.encode(text, add_special_tokens=False).ids
