"""How `llmfs chat` turns a conversation into prompt ids, and which ids end a reply: the checkpoint's template.

Two kinds of checkpoint carry a chat template (`chat_template.jinja` beside the tokenizer):
- llmfs's own (`llmfs sft` and later stages): rendered by `llmfs/tokenizer/chat.py`, exactly as SFT trained on
  it; a reply ends at `<|end|>`.
- one brought in by `llmfs import hf` from a transformers chat model (ChatML, Llama 3, ...): rendered by Jinja in
  a sandbox, the way transformers' `apply_chat_template` renders it (trim_blocks, lstrip_blocks, the messages,
  `add_generation_prompt`, `bos_token`, `eos_token`), then tokenized with special tokens recognised; a reply
  ends at the ids the import recorded (`generation_config.json`'s `eos_token_id`, else the `eos_token`).
A checkpoint without a template is a base model: refused, with what to do instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from llmfs.errors import LlmfsError


@dataclasses.dataclass(frozen=True)
class ChatFormat:
    render_prompt: Callable[[Sequence[Mapping[str, str]]], list[int]]  # messages -> ids ending where a reply starts
    stop_ids: tuple[int, ...]  # a reply ends at the first of these (not shown)


def llmfs_format(tokenizer) -> ChatFormat:
    from llmfs.tokenizer.chat import end_id, render_prompt

    return ChatFormat(lambda messages: render_prompt(tokenizer, messages), (end_id(tokenizer),))


def jinja_format(tokenizer, template: str, *, bos_token: str | None, eos_token: str | None,
                 stop_ids: Sequence[int]) -> ChatFormat:
    """A transformers-style Jinja chat template, rendered in the environment transformers gives it
    (`_compile_jinja_template`): sandboxed, trim / lstrip blocks, `{% break %}` / `{% continue %}`,
    `{% generation %}` blocks (transformers marks assistant text with them; here they render their body), a
    `tojson` that keeps non-ASCII text and does not HTML-escape, and the globals `raise_exception` and
    `strftime_now`."""
    import datetime
    import json

    from jinja2 import TemplateError, nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(Extension):  # transformers' AssistantTracker, less the tracking
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body, lineno=lineno)

    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols, GenerationBlock])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    try:
        compiled = env.from_string(template)
    except TemplateError as e:  # a syntax error: the template file itself is broken
        raise LlmfsError(f"the checkpoint's chat template does not parse ({e}); fix or replace its "
                         "chat_template.jinja") from None

    def render_prompt(messages: Sequence[Mapping[str, str]]) -> list[int]:
        try:
            text = compiled.render(messages=[dict(m) for m in messages], add_generation_prompt=True,
                                   bos_token=bos_token or "", eos_token=eos_token or "")
        except TemplateError as e:
            raise LlmfsError(f"the checkpoint's chat template refused the conversation: {e}") from None
        return tokenizer.encode(text, allowed_special="all")

    return ChatFormat(render_prompt, tuple(stop_ids))


def base_model_error(where: str) -> LlmfsError:
    return LlmfsError(f"{where}: has no chat template: it is a base model; use 'llmfs generate' for plain "
                      "continuation, or 'llmfs sft' to make a chat model from it")


def chat_format(tokenizer, checkpoint) -> ChatFormat:
    """The chat format of an opened checkpoint (`llmfs.checkpoint.Checkpoint`), or a one-line refusal."""
    from llmfs.checkpoint import TEMPLATE_FILE
    from llmfs.tokenizer.chat import CHAT_TEMPLATE_JINJA, has_chat_tokens

    where = str(checkpoint.path)
    template: Path = checkpoint.path / TEMPLATE_FILE
    if not template.is_file():
        raise base_model_error(where)
    text = template.read_text(encoding="utf-8")
    if text.strip() == CHAT_TEMPLATE_JINJA and has_chat_tokens(tokenizer):
        return llmfs_format(tokenizer)
    chat = dict((checkpoint.extra or {}).get("chat") or {})
    stop_ids = [i for i in chat.get("stop_ids") or [] if isinstance(i, int)]
    if not stop_ids:
        raise LlmfsError(f"{template}: a chat template that is not llmfs's, and the checkpoint does not say which "
                         "tokens end a reply (an 'llmfs import hf' of a chat model records them)")
    return jinja_format(tokenizer, text, bos_token=chat.get("bos_token"), eos_token=chat.get("eos_token"),
                        stop_ids=stop_ids)
