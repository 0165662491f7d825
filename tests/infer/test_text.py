"""Streamed text: pieces joined equal the full decode (property test on multi-byte text), stop strings cut the
text before them and never leak, batched text generation equals streaming."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmfs.infer.sampling import SamplingConfig
from llmfs.infer.text import TextAssembler, TextStream, generate_text
from llmfs.model.config import ModelConfig
from llmfs.model.transformer import Transformer
from llmfs.tokenizer.byte import ByteTokenizer

TOK = ByteTokenizer()


def pieces(ids, stop=()):
    t = TextAssembler(TOK, stop)
    out = [t.feed(i) for i in ids]
    out.append(t.flush())
    return out, t


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
       st.lists(st.integers(0, 255), max_size=6))
def test_streamed_pieces_join_to_the_full_decode(text, junk):
    # multi-byte characters arrive one byte (token) at a time; random bytes make invalid UTF-8 too
    ids = TOK.encode(text) + junk
    out, t = pieces(ids)
    assert "".join(out) == TOK.decode(ids) == t.text
    assert all("\ufffd" not in p for p in out[:-1]) or "\ufffd" in TOK.decode(ids)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab\u00e9\u20ac\U0001f600\n", max_size=30), st.text(alphabet="ab\u00e9\n", min_size=1,
                                                                           max_size=3))
def test_stop_string_cuts_before_its_first_occurrence_and_never_leaks(text, stop):
    full = TOK.decode(TOK.encode(text))
    out, t = pieces(TOK.encode(text), [stop])
    cut = full.find(stop)
    want = full if cut < 0 else full[:cut]
    assert "".join(out) == want == t.text and t.stopped == (cut >= 0)
    shown = ""
    for p in out:  # at no moment has a prefix containing the stop string been shown
        shown += p
        assert stop not in shown


def test_stop_string_split_over_tokens_and_a_false_start():
    out, t = pieces(TOK.encode("ab\n\ncd"), ["\n\n"])
    assert out[:3] == ["a", "b", ""] and "".join(out) == "ab" and t.stopped
    out, t = pieces(TOK.encode("ab\ncd"), ["\n\n"])  # "\n" is held back, then released
    assert out[2] == "" and out[3] == "\nc" and "".join(out) == "ab\ncd" and not t.stopped
    out, _ = pieces(TOK.encode("x\U0001f600y END z"), ["END", " E"])  # earliest match of several stops
    assert "".join(out) == "x\U0001f600y"


def model():
    cfg = ModelConfig(vocab_size=TOK.vocab_size, max_seq_len=64, d_model=32, n_layers=2, n_heads=4)
    return Transformer(cfg, generator=torch.Generator().manual_seed(0)).eval()


def test_text_stream_and_batched_text_agree_with_stop_strings():
    m = model()
    greedy = SamplingConfig(temperature=0, max_new_tokens=20)
    free = TextStream(m, TOK, TOK.encode("hello"), greedy)
    joined = "".join(free)
    assert joined == free.text and free.new_tokens == 20 and free.finish == "length"
    stop = free.text[5:7]  # a stop string the greedy completion is known to contain
    s = TextStream(m, TOK, TOK.encode("hello"), greedy, stop=[stop])
    assert "".join(s) == s.text == free.text[: free.text.find(stop)] and s.finish == "stop"
    assert s.new_tokens < 20
    batch = generate_text(m, TOK, ["hello", "ab"], greedy, stop=[stop])
    assert batch[0].completion == s.text and batch[0].finish == "stop" and batch[0].new_tokens == s.new_tokens
    alone = TextStream(m, TOK, TOK.encode("ab"), greedy, stop=[stop])
    assert batch[1].completion == "".join(alone) and batch[1].finish == alone.finish
    assert batch[1].prompt_tokens == 2


def test_end_of_text_id_stops_and_is_not_rendered():
    m = model()
    greedy = SamplingConfig(temperature=0, max_new_tokens=12)
    free = TextStream(m, TOK, [1, 2, 3], greedy, stop_ids=[])
    "".join(free)
    ids = TOK.encode(free.text)
    k = max(i for i, x in enumerate(ids) if x not in ids[:i])  # the last id that is new when it appears
    s = TextStream(m, TOK, [1, 2, 3], greedy, stop_ids=[ids[k]])
    assert "".join(s) == TOK.decode(ids[:k]) and s.finish == "stop" and s.new_tokens == k + 1
