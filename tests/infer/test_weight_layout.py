"""decode_layout: the same model (values, shapes, tie, logits, greedy tokens), only the linear weights' strides
changed to the transpose of a contiguous (in, out) matrix."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from llmfs.infer.generate import generate
from llmfs.infer.sampling import SamplingConfig
from llmfs.infer.weight_layout import decode_layout
from tests.model.test_kv_cache import CONFIGS, make

PROMPTS = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10]]


@torch.no_grad()
@pytest.mark.parametrize("name", ["mha_rope", "classic", "window_sinks", "moe"])
@pytest.mark.parametrize("tie", [True, False])
def test_same_values_logits_and_tokens_with_transposed_storage(name, tie):
    before = make({**CONFIGS[name], "tie_embeddings": tie})
    after = make({**CONFIGS[name], "tie_embeddings": tie})
    assert decode_layout(after, min_bytes=0) is after  # tiny matrices: every one re-stored
    linears = [m for m in after.modules() if isinstance(m, nn.Linear)]
    assert linears and all(m.weight.t().is_contiguous() and not m.weight.is_contiguous() for m in linears)
    for (k, a), (_, b) in zip(before.state_dict().items(), after.state_dict().items()):
        assert a.shape == b.shape and torch.equal(a, b), k
    assert (after.lm_head.weight is after.embed_tokens.weight) == tie  # the tie is the same Parameter still
    x = torch.randint(0, 17, (2, 11), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(after(x).logits, before(x).logits, atol=1e-5, rtol=1e-5)
    greedy = SamplingConfig(temperature=0, max_new_tokens=8)
    assert generate(after, PROMPTS, greedy) == generate(before, PROMPTS, greedy)
    decode_layout(after, min_bytes=0)  # twice is once
    assert all(m.weight.t().is_contiguous() for m in linears)
    torch.testing.assert_close(after(x).logits, before(x).logits, atol=1e-5, rtol=1e-5)


def test_only_matrices_of_min_bytes_and_more_are_re_stored():
    m = make(dict(CONFIGS["classic"], d_model=64, n_heads=4, vocab_size=200))  # up: 64 KiB; q 16, head 50
    decode_layout(m, min_bytes=64 << 10)
    restored = {name for name, p in m.named_parameters() if p.dim() == 2 and not p.is_contiguous()}
    assert restored == {f"layers.{i}.mlp.{n}.weight" for i in range(m.cfg.n_layers) for n in ("up_proj", "down_proj")}
    assert all(p.is_contiguous() for p in make(CONFIGS["mha_rope"]).parameters())  # untouched without the call
    small = decode_layout(make(CONFIGS["mha_rope"]))  # the default threshold: nothing this small moves
    assert all(p.is_contiguous() for p in small.parameters())
