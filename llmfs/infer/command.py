"""`llmfs generate CKPT`: prompts from --prompt / --file, completions to stdout (streamed for one prompt, or as
JSON), the generation speed to stderr."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from llmfs.config import from_dict
from llmfs.errors import DataError, LlmfsError
from llmfs.infer.sampling import SamplingConfig


def read_prompts(prompts: Sequence[str], file: str | None) -> list[str]:
    """--prompt values, then the lines of --file (one prompt per line; blank lines skipped)."""
    out = list(prompts)
    if file is not None:
        p = Path(file)
        if not p.is_file():
            raise DataError(f"{p}: prompt file not found; give a text file with one prompt per line")
        from llmfs.data.sources import read_utf8

        out += [line for line in read_utf8(p).splitlines() if line.strip()]
    if not out:
        raise LlmfsError("no prompt: give --prompt TEXT (repeatable) or --file prompts.txt")
    if any(p == "" for p in out):
        raise LlmfsError("an empty --prompt: every prompt needs at least one character")
    return out


def run(checkpoint: str, *, prompts: Sequence[str], file: str | None, sampling: dict, seed: int,
        stop: Sequence[str], use_cache: bool, rolling: bool, device: str | None, as_json: bool,
        compile: bool = False) -> None:
    from llmfs.infer.load import load_model
    from llmfs.infer.text import TextCompletion, TextStream, encode, generate_text, generation_settings
    from llmfs.infer.decode_linear import use_decode_linears
    from llmfs.runtime import resolve_device

    cfg = from_dict(SamplingConfig, sampling, source="generate options")
    texts = read_prompts(prompts, file)
    if any(s == "" for s in stop):
        raise LlmfsError("--stop '': a stop string needs at least one character")
    dev = resolve_device(device or "auto")
    model, tok, ckpt = load_model(checkpoint, device=dev)
    prefix, stop_ids = generation_settings(ckpt)
    model = use_decode_linears(model)  # CPU: decode-time products over row blocks (decode_linear.py)
    g = torch.Generator(device=dev).manual_seed(seed)
    decoder = None
    if compile:
        if not use_cache or rolling:
            raise LlmfsError("--compile compiles the static-cache decode step; drop --no-cache / --rolling")
        from llmfs.infer.compiled_decode import CompiledDecoder

        decoder = CompiledDecoder(model)
    t0 = time.perf_counter()
    if len(texts) == 1 and not as_json:
        ids = [*prefix, *encode(tok, texts[0])]
        s = TextStream(model, tok, ids, cfg, stop=stop, stop_ids=stop_ids, generator=g, use_cache=use_cache,
                       rolling=rolling, decoder=decoder)
        for piece in s:
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        results = [TextCompletion(texts[0], s.text, len(ids), s.new_tokens, s.finish, s.seconds)]
    else:
        results = generate_text(model, tok, texts, cfg, stop=stop, stop_ids=stop_ids, generator=g,
                                use_cache=use_cache, rolling=rolling, decoder=decoder, prefix_ids=prefix)
        if as_json:
            print(json.dumps([{"prompt": r.prompt, "completion": r.completion, "prompt_tokens": r.prompt_tokens,
                               "new_tokens": r.new_tokens, "finish": r.finish, "seconds": round(r.seconds, 4)}
                              for r in results], indent=2, ensure_ascii=False))
        else:
            for r in results:
                print(f"--- {r.prompt}\n{r.completion}")
    seconds = time.perf_counter() - t0
    new = sum(r.new_tokens for r in results)
    print(f"{new} new tokens in {seconds:.2f} s: {new / seconds:.1f} tokens/s "
          f"({len(results)} prompt{'s' if len(results) > 1 else ''}, {dev})", file=sys.stderr)
