"""The chat template: conversations -> token ids and a loss mask, the same for sft, reward, ppo, grpo and chat.

One template, with a special token per role and one for the end of a turn:

    <|system|>You are terse.<|end|><|user|>2+2?<|end|><|assistant|>4<|end|>

No newlines or spaces around the markers: each message's content is encoded on its own (`encode_ordinary`, so
text that spells a marker stays text, never a control token) and the markers are single ids, so the ids of a
conversation are exactly the concatenation of its turns. Two things follow that SFT relies on:
- the prompt rendered alone (`render_prompt`: the turns so far + `<|assistant|>`) is a token-level prefix of
  the full conversation, so what a model is trained on is what it sees at chat time;
- `transformers`' `apply_chat_template` with `CHAT_TEMPLATE_JINJA` gives the same ids, because a
  `tokenizers` file splits added tokens out first and encodes the text between them on its own
  (tests/tokenizer/test_chat.py checks the parity).

Loss mask (`Rendered.mask`): True at the ids a model is trained to produce: every assistant turn's content and
its `<|end|>` (which is how a model learns to stop), nothing else: not the system or user text, not the
`<|assistant|>` marker (the prompt supplies it).

A tokenizer trained without these tokens gets them appended after its own ids (`with_chat_tokens`); the model's
embedding and head must then grow to match (`llmfs/train/sft.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from llmfs.errors import DataError

SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
CHAT_TOKENS = (SYSTEM, USER, ASSISTANT, END)
ROLE_TOKENS = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}
TEMPLATE_FILE = "chat_template.jinja"  # beside tokenizer.json; transformers reads a file of this name

# The same template for transformers (`tokenizer.chat_template`); `add_generation_prompt` opens an assistant turn.
CHAT_TEMPLATE_JINJA = (
    "{%- for message in messages -%}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>' }}{%- endif -%}"
)


class Rendered(NamedTuple):
    """ids (T,) of a conversation, and mask (T,): True where the id is a training target."""

    ids: list[int]
    mask: list[bool]


def has_chat_tokens(tokenizer) -> bool:
    return all(t in tokenizer.special_tokens for t in CHAT_TOKENS)


def with_chat_tokens(tokenizer):
    """The tokenizer itself when it has the chat tokens, else a copy with the missing ones appended as special
    tokens (new ids after the existing ones, so every existing id keeps its meaning)."""
    if has_chat_tokens(tokenizer):
        return tokenizer
    from llmfs.tokenizer.byte import ByteTokenizer
    from llmfs.tokenizer.encoder import BPETokenizer

    specials = list(tokenizer.special_tokens) + [t for t in CHAT_TOKENS if t not in tokenizer.special_tokens]
    if isinstance(tokenizer, ByteTokenizer):
        return ByteTokenizer(specials)
    return BPETokenizer(tokenizer.vocab, tokenizer.merges, specials, tokenizer.pattern)


def check_messages(messages: Any, where: str, *, needs_reply: bool = True) -> list[dict[str, str]]:
    """The conversation as a list of {"role", "content"}, or a one-line DataError naming `where`.

    Rules: an optional system message first, then user and assistant turns alternating from a user turn; no
    empty content. `needs_reply`: it ends with an assistant turn (training data); otherwise it ends with a user
    turn (a prompt to answer)."""
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
            raise DataError(f"{where}: message {i} must be an object with 'role' and 'content'")
        role, content = m["role"], m["content"]
        if role not in ROLE_TOKENS:
            raise DataError(f"{where}: message {i} has unknown role {role!r}; use system, user or assistant")
        if not isinstance(content, str) or not content.strip():
            raise DataError(f"{where}: message {i} ({role}) has empty content")
        if role == "system" and i != 0:
            raise DataError(f"{where}: message {i} is a system message; only the first message may be one")
        out.append({"role": str(role), "content": content})
    turns = out[1:] if out[0]["role"] == "system" else out
    for i, m in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            raise DataError(f"{where}: turns must alternate user, assistant, user, ...; found {m['role']} where "
                            f"{expected} was expected")
    if needs_reply and (not turns or turns[-1]["role"] != "assistant"):
        raise DataError(f"{where}: the conversation has no assistant reply to learn from; end it with an "
                        "assistant message")
    if not needs_reply and (not turns or turns[-1]["role"] != "user"):
        raise DataError(f"{where}: a prompt must end with a user message")
    return out


def prompt_messages(prompt: Any, where: str) -> list[dict[str, str]]:
    """A prompt as the conversation so far: a string is one user turn; a message list is checked as a
    conversation ending with a user turn (what `builtin:preferences` and RL prompt records hold)."""
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    return check_messages(prompt, where, needs_reply=False)


def _ids(tokenizer) -> dict[str, int]:
    if not has_chat_tokens(tokenizer):
        raise DataError("the tokenizer has no chat tokens (<|user|>, <|assistant|>, ...): this is a base model; "
                        "use 'llmfs generate' for plain continuation, or 'llmfs sft' to make a chat model")
    return {t: tokenizer.special_tokens[t] for t in CHAT_TOKENS}


def render(tokenizer, messages: Sequence[Mapping[str, str]]) -> Rendered:
    """A checked conversation (see `check_messages`) -> ids and loss mask."""
    special = _ids(tokenizer)
    ids: list[int] = []
    mask: list[bool] = []
    for m in messages:
        body = tokenizer.encode_ordinary(m["content"])
        train = m["role"] == "assistant"
        ids += [special[ROLE_TOKENS[m["role"]]], *body, special[END]]
        mask += [False] + [train] * (len(body) + 1)  # the reply and its end-of-turn token
    return Rendered(ids, mask)


def render_prompt(tokenizer, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """The ids a model continues to answer: the conversation so far, then `<|assistant|>`."""
    special = _ids(tokenizer)
    return render(tokenizer, messages).ids + [special[ASSISTANT]]


def end_id(tokenizer) -> int:
    """The end-of-turn id: generation of a reply stops here."""
    return _ids(tokenizer)[END]


def alpaca_to_messages(record: Mapping[str, Any], where: str) -> list[dict[str, str]]:
    """An Alpaca-style record (`instruction`, optional `input`, `output`) as a two-turn conversation; the input,
    when present, follows the instruction after a blank line (the Alpaca prompt's order)."""
    for key in ("instruction", "output"):
        if not isinstance(record.get(key), str):
            raise DataError(f"{where}: an Alpaca record needs a string '{key}'")
    extra = record.get("input") or ""
    if not isinstance(extra, str):
        raise DataError(f"{where}: 'input' must be a string")
    user = record["instruction"] if not extra.strip() else f"{record['instruction']}\n\n{extra}"
    return [{"role": "user", "content": user}, {"role": "assistant", "content": record["output"]}]
