"""`llmfs chat CKPT`: a multi-turn conversation with a chat model, streamed, in a terminal or over a pipe.

`ChatSession` holds the conversation and renders it through the checkpoint's chat template for every reply
(`chat_format.py`: llmfs's own, exactly what SFT trained on, or an imported transformers model's Jinja
template). When the rendered conversation plus room for a reply no longer fits the context, the oldest turns
are dropped (the system message stays) and the caller is told; a reply never runs past the context. `repl`
reads lines from a stream: text is a message, a line starting with `/` is a command:

    /reset                forget the conversation (the system message stays)
    /system TEXT          set the system message (and start over)
    /set KEY VALUE        change a sampling option, e.g. /set temperature 0.7, /set max_new_tokens 64
    /save FILE            write the conversation as JSON ({"messages": [...]})
    /help                 list the commands
    /quit                 leave (Ctrl-D does too)

Ctrl-C during a reply stops that reply and keeps the session: the part already shown stays in the history (an
empty one is dropped together with its question, so turns still alternate).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import torch

from llmfs.config import from_dict
from llmfs.errors import ConfigError, LlmfsError
from llmfs.infer.generate import stream
from llmfs.infer.sampling import SamplingConfig
from llmfs.infer.text import TextAssembler
from llmfs.infer.chat_format import ChatFormat, base_model_error, chat_format, llmfs_format
from llmfs.tokenizer.chat import has_chat_tokens

HELP = """commands: /reset, /system TEXT, /set KEY VALUE, /save FILE, /help, /quit (Ctrl-D); Ctrl-C stops a reply"""


def check_chat_model(tokenizer, template: Path, where: str) -> None:
    """Refuse a base model (no chat tokens) or a checkpoint whose stored template is not llmfs's: the stages that
    train on chat (PPO, GRPO) render with llmfs's template (`llmfs chat` itself also takes an imported model's
    own template: chat_format.py)."""
    from llmfs.tokenizer.chat import CHAT_TEMPLATE_JINJA

    if not has_chat_tokens(tokenizer) or not template.is_file():
        raise base_model_error(where)
    if template.read_text(encoding="utf-8").strip() != CHAT_TEMPLATE_JINJA:
        raise LlmfsError(f"{template}: is not the llmfs chat template; this checkpoint's replies would be "
                         "rendered differently from how it was trained")


class ChatSession:
    """A conversation with one model: `reply(text)` streams the answer and records both turns."""

    def __init__(self, model: torch.nn.Module, tokenizer, cfg: SamplingConfig, *, system: str | None = None,
                 generator: torch.Generator | None = None, decoder=None, chat_format: ChatFormat | None = None):
        self.model, self.tokenizer, self.cfg, self.generator = model, tokenizer, cfg, generator
        # how messages become ids and which ids end a reply (chat_format.py): llmfs's template unless told
        self.format = chat_format if chat_format is not None else llmfs_format(tokenizer)
        self.decoder = decoder  # a CompiledDecoder (llmfs chat --compile): every reply decodes with its step
        self.system = system
        self.messages: list[dict[str, str]] = self._start()
        self.dropped_turns = 0  # how many turns the last reply had to forget to fit the context
        self.interrupted = False

    def _start(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system}] if self.system else []

    def reset(self) -> None:
        self.messages = self._start()

    def set_system(self, text: str) -> None:
        self.system = text.strip() or None
        self.reset()

    def set_option(self, key: str, value: str) -> None:
        """`/set KEY VALUE`: any SamplingConfig field, checked like a recipe value."""
        import tomllib

        try:
            parsed = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value
        fields = {f.name for f in dataclasses.fields(SamplingConfig)}
        if key not in fields:
            raise ConfigError(f"/set {key}: unknown option; use one of {', '.join(sorted(fields))}")
        self.cfg = from_dict(SamplingConfig, {**dataclasses.asdict(self.cfg), key: parsed}, source="/set")

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(json.dumps({"messages": self.messages}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return p

    def _prompt(self, messages: list[dict[str, str]]) -> tuple[list[int], int]:
        """The prompt ids, dropping the oldest user/assistant pairs until there is room for a reply of
        `reserve` tokens: max_new_tokens, or a quarter of the context when that is smaller."""
        head = messages[:1] if messages and messages[0]["role"] == "system" else []
        turns = messages[len(head):]
        context = self.model.cfg.max_seq_len
        limit = context - min(self.cfg.max_new_tokens, max(1, context // 4))
        dropped = 0
        while True:
            ids = self.format.render_prompt(head + turns)
            if len(ids) <= limit or len(turns) <= 1:
                break
            turns, dropped = turns[2:], dropped + 2
        if len(ids) > limit:
            raise LlmfsError(f"the message is {len(ids)} tokens with the template and the context holds "
                             f"{context}, leaving no room for a reply: send a shorter message")
        return ids, dropped

    def reply(self, text: str) -> Iterator[str]:
        """Stream the reply to `text` as printable pieces; afterwards the exchange is in `messages`."""
        asked = [*self.messages, {"role": "user", "content": text}]
        ids, self.dropped_turns = self._prompt(asked)
        if self.dropped_turns:
            head = asked[:1] if asked[0]["role"] == "system" else []
            asked = head + asked[len(head) + self.dropped_turns:]
        stops = set(self.format.stop_ids)
        assembler = TextAssembler(self.tokenizer)  # no stop strings: its text is exactly what was shown
        budget = min(self.cfg.max_new_tokens, self.model.cfg.max_seq_len - len(ids))  # a reply ends in the context
        cfg = dataclasses.replace(self.cfg, max_new_tokens=budget)
        pieces = stream(self.model, ids, cfg, generator=self.generator, stop_ids=list(stops), decoder=self.decoder)
        finished = False
        try:
            for i in pieces:
                if i in stops:
                    break
                piece = assembler.feed(i)
                if piece:
                    yield piece
            tail = assembler.flush()
            if tail:
                yield tail
            finished = True
        except KeyboardInterrupt:  # Ctrl-C while the model computes
            pass
        finally:  # also when the caller closes us (Ctrl-C while a piece is printed)
            pieces.close()
            self.interrupted = not finished
            answer = assembler.text.strip()
            if answer:
                self.messages = [*asked, {"role": "assistant", "content": answer}]
            else:  # nothing said: forget the question too, so user and assistant turns keep alternating
                self.messages = asked[:-1]


def repl(session: ChatSession, lines: TextIO, write: Callable[[str], None], *, interactive: bool) -> None:
    """Read messages and commands until /quit or end of input. `write` prints without a newline."""
    if interactive:
        write(f"chat: {HELP}\n")
    while True:
        if interactive:
            write("you> ")
        try:
            line = lines.readline()
        except KeyboardInterrupt:  # Ctrl-C at the prompt: a fresh line, keep going
            write("\n")
            continue
        if not line:  # Ctrl-D / end of the pipe
            if interactive:
                write("\n")
            return
        text = line.rstrip("\n")
        if not text.strip():
            continue
        if text.startswith("/"):
            if not _command(session, text, write):
                return
            continue
        if interactive:
            write("assistant> ")
        replying = session.reply(text)
        try:
            for piece in replying:
                write(piece)
        except KeyboardInterrupt:  # Ctrl-C while a piece was being printed
            replying.close()
        except LlmfsError as e:
            write(f"error: {e}\n")
            continue
        write("\n")
        if session.interrupted:
            write("[reply stopped]\n")
        if session.dropped_turns:
            write(f"[context full: forgot the oldest {session.dropped_turns} messages]\n")


def _command(session: ChatSession, text: str, write: Callable[[str], None]) -> bool:
    """Run one /command; False means quit."""
    name, _, arg = text[1:].partition(" ")
    arg = arg.strip()
    if name in ("quit", "exit"):
        return False
    try:
        if name == "reset":
            session.reset()
            write("[conversation reset]\n")
        elif name == "system":
            session.set_system(arg)
            write("[system message set; conversation reset]\n")
        elif name == "set":
            key, _, value = arg.partition(" ")
            session.set_option(key, value.strip())
            write(f"[{key} = {getattr(session.cfg, key)}]\n")
        elif name == "save":
            if not arg:
                raise LlmfsError("/save needs a file name: /save chat.json")
            write(f"[saved {session.save(arg)}]\n")
        elif name == "help":
            write(HELP + "\n")
        else:
            write(f"unknown command /{name}; {HELP}\n")
    except (LlmfsError, OSError) as e:
        write(f"error: {e}\n")
    return True


def run(checkpoint: str, *, sampling: dict, system: str | None, seed: int, device: str | None,
        compile: bool = False) -> None:
    """`llmfs chat`: load, check it is a chat model, then talk over stdin / stdout."""
    import sys

    from llmfs.infer.load import load_model
    from llmfs.infer.decode_linear import use_decode_linears
    from llmfs.runtime import resolve_device

    cfg = from_dict(SamplingConfig, sampling, source="chat options")
    dev = resolve_device(device or "auto")
    model, tok, ckpt = load_model(checkpoint, device=dev)
    use_decode_linears(model)  # CPU: decode-time products over row blocks of the weights (decode_linear.py)
    fmt = chat_format(tok, ckpt)  # llmfs's template, or an imported model's own; a base model is refused
    decoder = None
    if compile:
        from llmfs.infer.compiled_decode import CompiledDecoder

        decoder = CompiledDecoder(model)
    session = ChatSession(model, tok, cfg, system=system, generator=torch.Generator(device=dev).manual_seed(seed),
                          decoder=decoder, chat_format=fmt)

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    repl(session, sys.stdin, write, interactive=sys.stdin.isatty())
