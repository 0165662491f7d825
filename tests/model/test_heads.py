import torch

from llmfs.model.heads import ScalarHead


def test_scalar_head_reads_given_positions():
    head = ScalarHead(8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        head.score.bias.fill_(0.5)
    hidden = torch.randn(3, 5, 8)
    index = torch.tensor([4, 0, 2])
    every = head(hidden)
    assert every.shape == (3, 5)
    picked = head(hidden, index)
    assert picked.shape == (3,)
    for b in range(3):
        torch.testing.assert_close(picked[b], hidden[b, index[b]] @ head.score.weight[0] + 0.5)
        torch.testing.assert_close(picked[b], every[b, index[b]])


def test_scalar_head_without_bias():
    assert set(ScalarHead(4, bias=False).state_dict()) == {"score.weight"}
