"""Text in, text out: prompts as strings, completions streamed as UTF-8-safe pieces, stop strings.

`TextAssembler` turns new ids into text pieces: a `StreamingDecoder` holds back incomplete UTF-8 characters,
and the tail that could still grow into a stop string is held back too, so a stop string never reaches the
output: the completion is cut right before its first occurrence. A stop id (end of text) ends the text and is
not rendered.

    s = TextStream(model, tok, tok.encode(prompt), cfg, stop=["\\n\\n"], generator=g)
    for piece in s: print(piece, end="", flush=True)
    s.finish, s.new_tokens, s.text
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence

import torch

from llmfs.infer.generate import complete, stream
from llmfs.infer.sampling import SamplingConfig
from llmfs.tokenizer.stream import StreamingDecoder


def default_stop_ids(tokenizer) -> list[int]:
    """The tokenizer's end-of-text id, when it has one."""
    eot = getattr(tokenizer, "eot_id", None)
    return [] if eot is None else [eot]


class TextAssembler:
    """Feed ids, get the text that is safe to show; `stopped` turns True at the first stop string."""

    def __init__(self, tokenizer, stop: Sequence[str] = ()):
        if any(s == "" for s in stop):
            raise ValueError("a stop string cannot be empty")
        self._decoder = StreamingDecoder(tokenizer)
        self._stop = tuple(stop)
        self._longest = max((len(s) for s in self._stop), default=0)
        self.text = ""  # everything decoded so far (cut at a stop string once found)
        self._shown = 0  # characters of `text` already returned
        self.stopped = False

    def feed(self, token_id: int) -> str:
        return self._add(self._decoder.feed(token_id))

    def flush(self) -> str:
        """The end of the stream: the held-back tail (and a dangling partial character, as U+FFFD)."""
        out = "" if self.stopped else self._add(self._decoder.flush())
        rest, self._shown = self.text[self._shown:], len(self.text)
        return out + rest

    def _add(self, piece: str) -> str:
        if self.stopped or not piece:
            return ""
        start = max(0, len(self.text) - self._longest + 1)  # a new match must end inside the new piece
        self.text += piece
        hits = [i for s in self._stop if (i := self.text.find(s, start)) >= 0]
        if hits:
            self.text, self.stopped = self.text[: min(hits)], True
            safe = len(self.text)
        else:
            safe = len(self.text) - self._held()
        out, self._shown = self.text[self._shown:safe], max(self._shown, safe)
        return out

    def _held(self) -> int:
        """Length of the longest tail of `text` that is a proper prefix of a stop string."""
        for k in range(min(self._longest - 1, len(self.text)), 0, -1):
            tail = self.text[-k:]
            if any(s.startswith(tail) for s in self._stop):
                return k
        return 0


class TextStream:
    """Iterate to get the completion of one prompt piece by piece; afterwards `text`, `finish` ("stop" or
    "length"), `new_tokens` and `seconds` describe it. Keyword arguments go to `generate.stream`."""

    def __init__(self, model, tokenizer, prompt_ids: Sequence[int], cfg: SamplingConfig, *,
                 stop: Sequence[str] = (), stop_ids: Sequence[int] | None = None, **kwargs):
        self._args = (model, list(prompt_ids), cfg)
        self._stop_ids = default_stop_ids(tokenizer) if stop_ids is None else list(stop_ids)
        self._kwargs = kwargs
        self._text = TextAssembler(tokenizer, stop)
        self.finish: str | None = None
        self.new_tokens = 0
        self.seconds = 0.0

    @property
    def text(self) -> str:
        return self._text.text

    def __iter__(self) -> Iterator[str]:
        t0 = time.perf_counter()
        ids = stream(*self._args, stop_ids=self._stop_ids, **self._kwargs)
        self.finish = "length"
        try:
            for i in ids:
                self.new_tokens += 1
                if i in self._stop_ids:
                    self.finish = "stop"
                    break
                piece = self._text.feed(i)
                if piece:
                    yield piece
                if self._text.stopped:
                    self.finish = "stop"
                    break
        finally:
            ids.close()  # no more forwards; restores the model's train/eval mode
        tail = self._text.flush()
        self.seconds = time.perf_counter() - t0
        if tail:
            yield tail


@dataclasses.dataclass(frozen=True)
class TextCompletion:
    prompt: str
    completion: str
    prompt_tokens: int
    new_tokens: int
    finish: str  # "stop" | "length"
    seconds: float


def generate_text(model, tokenizer, prompts: Sequence[str], cfg: SamplingConfig, *, stop: Sequence[str] = (),
                  stop_ids: Sequence[int] | None = None, generator: torch.Generator | None = None,
                  use_cache: bool = True, rolling: bool = False, decoder=None,
                  prefix_ids: Sequence[int] = ()) -> list[TextCompletion]:
    """Complete every prompt in one batch; each row stops at its stop id or stop string on its own.
    `prefix_ids` go before every prompt's ids (an imported model's BOS: `generation_settings`)."""
    encoded = [[*prefix_ids, *encode(tokenizer, p)] for p in prompts]
    stop_ids = default_stop_ids(tokenizer) if stop_ids is None else list(stop_ids)
    texts = [TextAssembler(tokenizer, stop) for _ in prompts]

    def stop_when(row: int, ids: list[int]) -> bool:
        texts[row].feed(ids[-1])
        return texts[row].stopped

    done = complete(model, encoded, cfg, generator=generator, stop_ids=stop_ids, use_cache=use_cache,
                    rolling=rolling, stop_when=stop_when if stop else None, decoder=decoder)
    out = []
    for p, ids, c, t in zip(prompts, encoded, done, texts):
        if not stop:  # no stop strings: decode once at the end
            for i in c.ids:
                if i not in stop_ids:
                    t.feed(i)
        t.flush()
        out.append(TextCompletion(p, t.text, len(ids), len(c.ids), c.finish, c.seconds))
    return out


def generation_settings(checkpoint) -> tuple[list[int], list[int] | None]:
    """(ids to put before a plain prompt, ids that end generation or None for the tokenizer's end of text) of a
    checkpoint: what `llmfs import hf` recorded of the source model's tokenizer and generation_config.json
    (Llama's BOS before the prompt, Llama 3's <|end_of_text|>); nothing and None for llmfs's own models."""
    settings = dict(checkpoint.extra.get("generation") or {})
    return list(settings.get("prompt_prefix_ids") or []), (list(settings["stop_ids"]) if settings.get("stop_ids")
                                                           else None)


def encode(tokenizer, text: str) -> list[int]:
    """A prompt's ids; special tokens spelled in it (e.g. <|endoftext|>) become their ids."""
    return tokenizer.encode(text, allowed_special="all")
