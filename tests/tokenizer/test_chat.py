"""The chat template: hand-written masks, prompt-prefix property, transformers parity, bad conversations."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from llmfs import checkpoint as ck
from llmfs.errors import DataError
from llmfs.tokenizer import train_bpe
from llmfs.tokenizer.byte import ByteTokenizer
from llmfs.tokenizer.chat import (ASSISTANT, CHAT_TEMPLATE_JINJA, END, SYSTEM, TEMPLATE_FILE, USER,
                                  alpaca_to_messages, check_messages, end_id, has_chat_tokens, render,
                                  render_prompt, with_chat_tokens)
from llmfs.tokenizer.hf import load, save

TWO_TURNS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4"},
]


@pytest.fixture(scope="module")
def tok():
    text = ["Hi there. Hello! Be brief. What is 2+2? It is 4. " * 30, "the cat sat on the mat " * 30]
    return with_chat_tokens(train_bpe(text, 300, special_tokens=("<|endoftext|>",), pattern="gpt4"))


def test_one_turn_mask_by_hand():
    byte = with_chat_tokens(ByteTokenizer())  # ids: bytes 0..255, <|endoftext|> 256, chat tokens 257..260
    s = byte.special_tokens
    r = render(byte, [{"role": "user", "content": "ab"}, {"role": "assistant", "content": "c"}])
    assert r.ids == [s[USER], 97, 98, s[END], s[ASSISTANT], 99, s[END]]
    assert r.mask == [False, False, False, False, False, True, True]  # the reply and its end-of-turn only
    assert render_prompt(byte, [{"role": "user", "content": "ab"}]) == [s[USER], 97, 98, s[END], s[ASSISTANT]]
    assert end_id(byte) == s[END]


def test_multi_turn_mask_by_hand():
    byte = with_chat_tokens(ByteTokenizer())
    s = byte.special_tokens
    r = render(byte, [{"role": "system", "content": "z"}, {"role": "user", "content": "a"},
                      {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"},
                      {"role": "assistant", "content": "de"}])
    assert r.ids == [s[SYSTEM], 122, s[END], s[USER], 97, s[END], s[ASSISTANT], 98, s[END],
                     s[USER], 99, s[END], s[ASSISTANT], 100, 101, s[END]]
    targets = [i for i, m in zip(r.ids, r.mask) if m]
    assert targets == [98, s[END], 100, 101, s[END]]


def test_prompt_is_a_token_prefix_of_the_conversation(tok):
    full = render(tok, TWO_TURNS).ids
    for k in (2, 4):  # up to each user turn
        prompt = render_prompt(tok, TWO_TURNS[:k])
        assert full[:len(prompt)] == prompt


def test_marker_text_inside_content_stays_text(tok):
    r = render(tok, [{"role": "user", "content": "say <|end|> now"}, {"role": "assistant", "content": "ok"}])
    assert r.ids.count(tok.special_tokens[END]) == 2  # only the two real turn ends


def test_with_chat_tokens_keeps_existing_ids():
    base = train_bpe(["abc abc abd " * 20], 270, special_tokens=("<|endoftext|>", "<|pad|>"), pattern="gpt2")
    chat = with_chat_tokens(base)
    assert not has_chat_tokens(base) and has_chat_tokens(chat)
    assert chat.special_tokens["<|endoftext|>"] == base.special_tokens["<|endoftext|>"]
    assert chat.vocab_size == base.vocab_size + 4
    assert chat.encode("abc abd") == base.encode("abc abd")
    assert with_chat_tokens(chat) is chat


def test_base_tokenizer_is_refused():
    with pytest.raises(DataError, match="base model"):
        render(ByteTokenizer(), TWO_TURNS)


def test_template_file_travels_with_tokenizer_and_checkpoint(tmp_path, tok):
    from llmfs.model.config import ModelConfig
    from llmfs.model.transformer import Transformer

    save(tok, tmp_path / "tok")
    assert (tmp_path / "tok" / TEMPLATE_FILE).read_text(encoding="utf-8").strip() == CHAT_TEMPLATE_JINJA
    assert has_chat_tokens(load(tmp_path / "tok"))
    cfg = ModelConfig(vocab_size=tok.vocab_size, max_seq_len=16, d_model=16, n_layers=1, n_heads=2)
    path = ck.save(tmp_path / "ckpt", kind="causal_lm", model_config=dataclasses.asdict(cfg),
                   state_dict=Transformer(cfg).state_dict(), tokenizer_json=tmp_path / "tok" / "tokenizer.json")
    assert TEMPLATE_FILE in ck.open_checkpoint(path).files  # hashed like every file
    save(ByteTokenizer(), tmp_path / "base")
    assert not (tmp_path / "base" / TEMPLATE_FILE).exists()


def test_transformers_apply_chat_template_gives_the_same_ids(tmp_path, tok):
    transformers = pytest.importorskip("transformers")
    save(tok, tmp_path)
    hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"),
                                              chat_template=CHAT_TEMPLATE_JINJA)
    ids = hf.apply_chat_template(TWO_TURNS, tokenize=True, return_dict=False)
    assert list(ids) == render(tok, TWO_TURNS).ids
    prompt = hf.apply_chat_template(TWO_TURNS[:2], tokenize=True, add_generation_prompt=True, return_dict=False)
    assert list(prompt) == render_prompt(tok, TWO_TURNS[:2])


def test_export_carries_the_template_and_stops_at_end_of_turn(tmp_path, tok):
    transformers = pytest.importorskip("transformers")
    from llmfs.cli import main
    from llmfs.model.config import ModelConfig
    from llmfs.model.transformer import Transformer

    save(tok, tmp_path / "tok")
    cfg = ModelConfig(vocab_size=tok.vocab_size, max_seq_len=16, d_model=16, n_layers=1, n_heads=2)
    ck.save(tmp_path / "ckpt", kind="causal_lm", model_config=dataclasses.asdict(cfg),
            state_dict=Transformer(cfg, generator=torch.Generator().manual_seed(0)).state_dict(),
            tokenizer_json=tmp_path / "tok" / "tokenizer.json")
    assert main(["export", "hf", str(tmp_path / "ckpt"), str(tmp_path / "hf")]) == 0
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    ids = hf_tok.apply_chat_template(TWO_TURNS, tokenize=True, return_dict=False)
    assert list(ids) == render(tok, TWO_TURNS).ids
    gen = transformers.GenerationConfig.from_pretrained(tmp_path / "hf")
    assert tok.special_tokens[END] in gen.eos_token_id


@pytest.mark.parametrize("messages, match", [
    ([], "non-empty list"),
    ("hello", "non-empty list"),
    ([{"role": "user"}], "'role' and 'content'"),
    ([{"role": "robot", "content": "x"}], "unknown role 'robot'"),
    ([{"role": "user", "content": "  "}, {"role": "assistant", "content": "x"}], "empty content"),
    ([{"role": "user", "content": "a"}], "no assistant reply"),
    ([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}], "only the first"),
    ([{"role": "assistant", "content": "a"}], "alternate"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "alternate"),
])
def test_bad_conversations_name_the_record(messages, match):
    with pytest.raises(DataError, match=match) as e:
        check_messages(messages, "data.jsonl row 7")
    assert str(e.value).startswith("data.jsonl row 7: ")


def test_prompt_must_end_with_a_user_turn():
    assert check_messages(TWO_TURNS[:4], "x", needs_reply=False) == TWO_TURNS[:4]
    with pytest.raises(DataError, match="end with a user"):
        check_messages(TWO_TURNS, "x", needs_reply=False)


def test_alpaca_records_become_conversations():
    assert alpaca_to_messages({"instruction": "Sort.", "input": "b a", "output": "a b"}, "r") == [
        {"role": "user", "content": "Sort.\n\nb a"}, {"role": "assistant", "content": "a b"}]
    assert alpaca_to_messages({"instruction": "Hi", "input": "", "output": "Hello"}, "r")[0]["content"] == "Hi"
    with pytest.raises(DataError, match="'output'"):
        alpaca_to_messages({"instruction": "Hi"}, "r")
