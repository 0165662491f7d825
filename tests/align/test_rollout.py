"""Rollout layout, logprobs at the reply positions, and sampling through the batched cached decoder."""

from __future__ import annotations

import torch

from llmfs.align.rollout import Rollout, layout, sample, score_logprobs, token_keep, token_logprobs
from llmfs.infer.sampling import SamplingConfig
from llmfs.model.config import ModelConfig
from llmfs.model.transformer import Transformer
from llmfs.tokenizer.byte import ByteTokenizer
from llmfs.tokenizer.chat import END, with_chat_tokens

TOK = with_chat_tokens(ByteTokenizer())


def test_layout_by_hand():
    seqs, mask = layout([[1, 2, 3], [4]], [[5, 6], [7, 8, 9]], pad_id=0)
    assert seqs.tolist() == [[1, 2, 3, 5, 6], [4, 7, 8, 9, 0]]
    assert mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 0]]  # position t chooses token t + 1


def test_token_logprobs_by_hand():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [1 / 3, 1 / 3, 1 / 3]]]))
    seqs = torch.tensor([[0, 1, 2]])
    lp = token_logprobs(logits, seqs)
    assert torch.allclose(lp, torch.log(torch.tensor([[0.25, 0.1]])))
    hot = token_logprobs(logits, seqs, temperature=0.5)  # p^2 renormalised
    assert torch.allclose(hot, torch.log(torch.tensor([[0.0625 / 0.375, 0.01 / 0.66]])), atol=1e-6)


def test_sample_lays_out_replies_and_scores_them():
    cfg = ModelConfig(vocab_size=TOK.vocab_size, max_seq_len=64, d_model=32, n_layers=2, n_heads=4)
    model = Transformer(cfg, generator=torch.Generator().manual_seed(0)).eval()
    end = TOK.special_tokens[END]
    prompts = [TOK.encode("ab"), TOK.encode("hello")] * 2
    ro = sample(model, TOK, prompts, SamplingConfig(temperature=1.0, max_new_tokens=12), end_id=end, pad_id=256,
                generator=torch.Generator().manual_seed(3))
    assert ro.reply_lengths.tolist() == [len(r) for r in ro.replies]
    for i, (p, r) in enumerate(zip(prompts, ro.replies)):
        assert ro.sequences[i, :len(p) + len(r)].tolist() == p + r
        assert bool(ro.ended[i]) == (r[-1] == end)
        assert ro.texts[i] == TOK.decode([t for t in r if t != end])
    lp = score_logprobs(model, ro.sequences, temperature=1.0, batch_size=3)
    assert lp.shape == ro.mask.shape
    # the same numbers as one full forward, at the reply positions
    full = token_logprobs(model(ro.sequences).logits, ro.sequences)
    assert torch.allclose(lp * ro.mask, full * ro.mask, atol=1e-5)


def test_keep_marks_each_rows_tokens():
    seqs, mask = layout([[1, 2, 3], [4]], [[5, 6], [7, 8, 9]], pad_id=0)
    ro = Rollout(seqs, mask, [3, 1], [[5, 6], [7, 8, 9]], torch.tensor([False, False]), ["", ""])
    assert ro.keep.tolist() == [[True] * 5, [True, True, True, True, False]]
    assert token_keep([0, 2], 3).tolist() == [[False, False, False], [True, True, False]]


def test_moe_scoring_does_not_route_the_padding():
    """With a capacity limit, padding that is routed takes expert slots from the next rows' tokens. With the
    rollout's `keep`, a padded batch scores exactly like its rows packed into one sequence (the same tokens in
    the same order, attention kept inside each row by segment ids); without it, it does not."""
    cfg = ModelConfig(vocab_size=TOK.vocab_size, max_seq_len=64, d_model=32, n_layers=2, n_heads=4, n_experts=4,
                      top_k=2, capacity_factor=1.0)
    model = Transformer(cfg, generator=torch.Generator().manual_seed(0)).eval()
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 256, (n,), generator=g).tolist() for n in (3, 9, 4)]
    replies = [torch.randint(0, 256, (n,), generator=g).tolist() for n in (2, 6, 1)]
    seqs, mask = layout(prompts, replies, pad_id=0)
    keep = token_keep([len(p) + len(r) for p, r in zip(prompts, replies)], seqs.shape[1])
    packed = torch.cat([seqs[i][keep[i]] for i in range(3)])[None]  # (1, sum of lengths)
    segments = torch.cat([torch.full((int(keep[i].sum()),), i) for i in range(3)])[None]
    with torch.no_grad():
        logits = model(packed, segment_ids=segments).logits[0]
    want = torch.zeros_like(mask)
    start = 0
    for i in range(3):
        n = int(keep[i].sum())
        want[i, :n - 1] = token_logprobs(logits[None, start:start + n], seqs[i:i + 1, :n])[0]
        start += n
    got = score_logprobs(model, seqs, temperature=1.0, batch_size=3, keep=keep)
    torch.testing.assert_close(got * mask, want * mask, atol=1e-5, rtol=1e-5)
    routed = score_logprobs(model, seqs, temperature=1.0, batch_size=3)  # pads take capacity: other numbers
    assert not torch.allclose(routed * mask, want * mask, atol=1e-3)
