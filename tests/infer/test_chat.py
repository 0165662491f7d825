"""`llmfs chat`: driven over stdin end to end, commands, Ctrl-C mid-reply, a full context, base-model refusal."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest
import torch

from llmfs import checkpoint as ck
from llmfs.cli import main
from llmfs.errors import LlmfsError
from llmfs.infer.chat import ChatSession, repl
from llmfs.infer.sampling import SamplingConfig
from llmfs.model.config import ModelConfig
from llmfs.model.transformer import Transformer
from llmfs.tokenizer.byte import ByteTokenizer
from llmfs.tokenizer.chat import END, with_chat_tokens
from llmfs.tokenizer.hf import save

TOK = with_chat_tokens(ByteTokenizer())


def make_ckpt(path, tokenizer, max_seq_len=256, dropout=0.0):
    save(tokenizer, path / "tok")
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, max_seq_len=max_seq_len, d_model=32, n_layers=2, n_heads=4,
                      dropout=dropout)
    net = Transformer(cfg, generator=torch.Generator().manual_seed(0))
    return ck.save(path / "ckpt", kind="causal_lm", model_config=dataclasses.asdict(cfg),
                   state_dict=net.state_dict(), tokenizer_json=path / "tok" / "tokenizer.json"), net.eval()


@pytest.fixture(scope="module")
def chat_ckpt(tmp_path_factory):
    return make_ckpt(tmp_path_factory.mktemp("chat"), TOK)


def run_chat(monkeypatch, capsys, args, stdin: str):
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(["chat", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_two_turns_set_save_reset_over_stdin(tmp_path, monkeypatch, capsys, chat_ckpt):
    path, _ = chat_ckpt
    saved = tmp_path / "conv.json"
    script = "\n".join(["hello", "/set temperature 0.7", "/set max_new_tokens 5", "how are you?",
                        f"/save {saved}", "/reset", f"/save {tmp_path / 'empty.json'}", "/quit", "never read"])
    code, out, err = run_chat(monkeypatch, capsys, [str(path), "--max-new-tokens", "8", "--seed", "1",
                                                     "--system", "Be brief."], script + "\n")
    assert code == 0, err
    assert "[temperature = 0.7]" in out and "[max_new_tokens = 5]" in out and "[conversation reset]" in out
    conv = json.loads(saved.read_text())["messages"]
    assert [m["role"] for m in conv] == ["system", "user", "assistant", "user", "assistant"]
    assert conv[1]["content"] == "hello" and conv[3]["content"] == "how are you?"
    assert json.loads((tmp_path / "empty.json").read_text())["messages"] == [{"role": "system",
                                                                               "content": "Be brief."}]


def test_same_seed_same_replies(monkeypatch, capsys, chat_ckpt):
    path, _ = chat_ckpt
    outs = [run_chat(monkeypatch, capsys, [str(path), "--seed", "3", "--max-new-tokens", "12"], "hi\nyo\n")[1]
            for _ in range(2)]
    assert outs[0] == outs[1] and outs[0].count("\n") >= 2


def test_compiled_chat_gives_the_same_greedy_replies(monkeypatch, capsys, chat_ckpt):
    path, _ = chat_ckpt
    args = [str(path), "--temperature", "0", "--max-new-tokens", "10"]
    eager = run_chat(monkeypatch, capsys, args, "hi\nhow are you?\n")
    compiled = run_chat(monkeypatch, capsys, [*args, "--compile"], "hi\nhow are you?\n")
    assert eager[0] == compiled[0] == 0 and compiled[1] == eager[1] and eager[1].count("\n") >= 2


def test_greedy_reply_is_the_model_continuing_the_template(chat_ckpt):
    from llmfs.infer.generate import generate
    from llmfs.tokenizer.chat import render_prompt

    _, net = chat_ckpt
    session = ChatSession(net, TOK, SamplingConfig(temperature=0, max_new_tokens=10))
    text = "".join(session.reply("hi"))
    ids = generate(net, [render_prompt(TOK, [{"role": "user", "content": "hi"}])],
                   SamplingConfig(temperature=0, max_new_tokens=10), stop_ids=[TOK.special_tokens[END]])[0]
    expected = TOK.decode([i for i in ids if i != TOK.special_tokens[END]])
    assert text.strip() == expected.strip()


def test_ctrl_c_stops_the_reply_and_keeps_the_session(chat_ckpt, monkeypatch):
    _, net = chat_ckpt
    session = ChatSession(net, TOK, SamplingConfig(temperature=1.0, max_new_tokens=50),
                          generator=torch.Generator().manual_seed(0))
    calls = {"n": 0}
    real_forward = net.forward

    def interrupting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # prefill + 2 decode steps, then the user presses Ctrl-C
            raise KeyboardInterrupt
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(net, "forward", interrupting)
    out, written = io.StringIO("tell me a long story\nand now?\n"), []
    repl(session, out, written.append, interactive=False)
    assert "[reply stopped]\n" in written
    roles = [m["role"] for m in session.messages]
    assert roles[-2:] == ["user", "assistant"] and session.messages[-2]["content"] == "and now?"
    assert all(a != b for a, b in zip(roles, roles[1:]))  # turns still alternate


def test_full_context_drops_the_oldest_turns(tmp_path):
    _, net = make_ckpt(tmp_path, TOK, max_seq_len=64)
    session = ChatSession(net, TOK, SamplingConfig(temperature=0, max_new_tokens=8), system="S")
    for k in range(6):
        list(session.reply(f"message number {k}"))
    assert session.dropped_turns > 0
    assert session.messages[0] == {"role": "system", "content": "S"}
    assert session.messages[-2]["content"] == "message number 5"
    with pytest.raises(LlmfsError, match="no room for a reply"):
        list(session.reply("x" * 100))


def test_bad_set_values_are_reported_and_the_session_goes_on(monkeypatch, capsys, chat_ckpt):
    path, _ = chat_ckpt
    code, out, _ = run_chat(monkeypatch, capsys, [str(path), "--max-new-tokens", "4"],
                            "/set top_p 2\n/set temperature -1\n/set nope 1\n/bogus\nhi\n")
    assert code == 0
    assert "top_p" in out and "temperature" in out and "unknown option" in out and "unknown command /bogus" in out


def test_base_model_is_refused(tmp_path, monkeypatch, capsys):
    path, _ = make_ckpt(tmp_path, ByteTokenizer())
    code, _, err = run_chat(monkeypatch, capsys, [str(path)], "hi\n")
    assert code == 2 and "base model" in err and "llmfs generate" in err and "llmfs sft" in err
    code, _, err = run_chat(monkeypatch, capsys, [str(tmp_path / "missing")], "hi\n")
    assert code == 2 and "not found" in err


def test_system_help_and_the_context_full_notice_over_stdin(tmp_path, monkeypatch, capsys):
    path, _ = make_ckpt(tmp_path, TOK, max_seq_len=64)
    saved = tmp_path / "conv.json"
    script = ["/help", "first question", "/system Answer in French.", f"/save {saved}"]
    script += [f"message number {k}" for k in range(5)] + [f"/save {tmp_path / 'later.json'}"]
    code, out, err = run_chat(monkeypatch, capsys, [str(path), "--max-new-tokens", "8"], "\n".join(script) + "\n")
    assert code == 0, err
    assert "commands: /reset, /system TEXT" in out  # /help
    assert "[system message set; conversation reset]" in out
    # /system replaced the system message and started over: the first question is gone
    assert json.loads(saved.read_text())["messages"] == [{"role": "system", "content": "Answer in French."}]
    assert "[context full: forgot the oldest" in out  # the user is told when turns are dropped
    later = json.loads((tmp_path / "later.json").read_text())["messages"]
    assert later[0] == {"role": "system", "content": "Answer in French."}  # the system message stays
    assert later[1]["content"] != "message number 0" and later[-2]["content"] == "message number 4"


def test_ctrl_c_while_a_piece_is_printed_keeps_the_session(chat_ckpt):
    _, net = chat_ckpt
    session = ChatSession(net, TOK, SamplingConfig(temperature=1.0, max_new_tokens=30),
                          generator=torch.Generator().manual_seed(0))
    written, pieces = [], {"n": 0}

    def write(text):  # the terminal raises KeyboardInterrupt while the 3rd piece of the first reply is shown
        if len(session.messages) == 0:
            pieces["n"] += 1
            if pieces["n"] == 3:
                raise KeyboardInterrupt
        written.append(text)

    repl(session, io.StringIO("tell me a story\nand now?\n"), write, interactive=False)
    roles = [m["role"] for m in session.messages]
    assert roles == ["user", "assistant", "user", "assistant"] or roles == ["user", "assistant"]
    assert session.messages[-2]["content"] == "and now?"  # the next message was still answered


@pytest.mark.skipif(not hasattr(__import__("os"), "openpty"), reason="needs a pseudo-terminal")
def test_ctrl_c_in_a_terminal_stops_the_reply_and_the_session_goes_on(tmp_path):
    """`llmfs chat` in a pseudo-terminal: prompt, a long reply, SIGINT (Ctrl-C) mid-reply, "[reply stopped]",
    a new prompt (the session goes on), then Ctrl-D and exit code 0."""
    import os
    import select
    import signal
    import subprocess
    import sys
    import time

    from llmfs.infer.generate import generate

    path, net = make_ckpt(tmp_path, TOK, max_seq_len=4096)
    from llmfs.tokenizer.chat import render_prompt

    first = generate(net, [render_prompt(TOK, [{"role": "user", "content": "hi"}])],
                     SamplingConfig(temperature=0, max_new_tokens=200))[0]
    assert TOK.special_tokens[END] not in first  # greedy on this model does not end the reply early: a long one

    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "llmfs", "chat", str(path), "--temperature", "0",
                             "--max-new-tokens", "4000"], stdin=slave, stdout=slave, stderr=subprocess.PIPE,
                            close_fds=True)
    os.close(slave)
    seen = b""

    def read_until(done, timeout: float = 60.0) -> None:  # keep draining the terminal until done(seen)
        nonlocal seen
        deadline = time.time() + timeout
        while not done(seen):
            assert time.time() < deadline, f"timed out; the terminal shows {seen[-300:]!r}"
            if select.select([master], [], [], 0.1)[0]:
                seen += os.read(master, 65536)

    try:
        read_until(lambda s: b"you> " in s)
        os.write(master, b"hi\n")
        read_until(lambda s: b"assistant> " in s)
        start = len(seen)
        read_until(lambda s: len(s) - start > 50)  # part of the reply is on the screen
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        read_until(lambda s: b"[reply stopped]" in s)
        read_until(lambda s: s.count(b"you> ") >= 2)  # the session goes on: a new prompt
        os.write(master, b"\x04")  # Ctrl-D at the prompt
        assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
