"""Growing the vocabulary for added tokens: old logits unchanged, new rows at the mean, ties kept."""

from __future__ import annotations

import torch

from llmfs.model.config import ModelConfig
from llmfs.model.resize import grow_vocab
from llmfs.model.transformer import Transformer


def test_grow_vocab_keeps_old_logits_and_mean_initialises_new_rows():
    for tie in (True, False):
        cfg = ModelConfig(vocab_size=40, max_seq_len=16, d_model=16, n_layers=1, n_heads=2, tie_embeddings=tie)
        net = Transformer(cfg, generator=torch.Generator().manual_seed(0)).eval()
        x = torch.randint(0, 40, (2, 7), generator=torch.Generator().manual_seed(1))
        before = net(x).logits
        new = grow_vocab(net, cfg, 44)
        assert new.vocab_size == 44 and net.cfg.vocab_size == 44
        after = net(x).logits
        assert after.shape == (2, 7, 44)
        torch.testing.assert_close(after[..., :40], before, rtol=0, atol=0)
        emb = net.embed_tokens.weight
        torch.testing.assert_close(emb[40:], emb[:40].mean(0).expand(4, -1))
        assert (net.lm_head.weight is net.embed_tokens.weight) == tie
        assert set(Transformer(new).state_dict()) == set(net.state_dict())
