import pytest
import torch

transformers = pytest.importorskip("transformers")

from llmfs.config import from_dict  # noqa: E402
from llmfs.errors import ConfigError  # noqa: E402
from llmfs.model import ModelConfig, Transformer  # noqa: E402
from llmfs.model.hf import from_hf, to_hf  # noqa: E402

LLAMA = dict(vocab_size=61, max_seq_len=32, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48,
             rope_theta=500.0, norm_eps=1e-6)
GPT2 = dict(vocab_size=61, max_seq_len=32, d_model=32, n_layers=2, n_heads=4, position="learned",
            norm="layernorm", mlp="gelu", bias=True)


def ours(kw, seed=0):
    cfg = from_dict(ModelConfig, kw)
    m = Transformer(cfg, generator=torch.Generator().manual_seed(seed)).eval()
    with torch.no_grad():  # non-trivial norm weights and biases, so a mix-up cannot hide behind ones/zeros
        g = torch.Generator().manual_seed(seed + 1)
        for name, p in m.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return cfg, m


def hf_model(hf_cfg: dict, hf_sd: dict):
    kind = hf_cfg["model_type"]
    config = (transformers.LlamaConfig if kind == "llama" else transformers.GPT2Config)(**hf_cfg)
    model_cls = transformers.LlamaForCausalLM if kind == "llama" else transformers.GPT2LMHeadModel
    model = model_cls(config).eval()
    missing, unexpected = model.load_state_dict(hf_sd, strict=False)
    assert not unexpected, unexpected
    assert set(missing) <= {"lm_head.weight"}, missing  # the tied head is the embedding
    if config.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    return model


CASES = {
    "llama_gqa_tied": LLAMA,
    "llama_gqa_untied": {**LLAMA, "tie_embeddings": False},
    "llama_mqa_bias": {**LLAMA, "n_kv_heads": 1, "bias": True, "d_ff": None},
    "llama_mha": {**LLAMA, "n_kv_heads": None, "rope_theta": 10000.0},
    "gpt2": GPT2,
    "gpt2_tanh": {**GPT2, "mlp": "gelu_tanh", "d_ff": 40},
}


@torch.no_grad()
@pytest.mark.parametrize("name", sorted(CASES))
def test_logits_match_transformers(name):
    cfg, m = ours(CASES[name])
    hf_cfg, hf_sd = to_hf(cfg, m.state_dict())
    ref = hf_model(hf_cfg, hf_sd)
    x = torch.randint(0, 61, (2, 20), generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(m(x).logits, ref(input_ids=x).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(CASES))
def test_round_trip_is_bit_identical(name):
    cfg, m = ours(CASES[name])
    sd = m.state_dict()
    cfg2, sd2 = from_hf(*to_hf(cfg, sd))
    assert cfg2 == cfg
    assert sd2.keys() == sd.keys()
    for k in sd:
        assert sd2[k].dtype == sd[k].dtype and torch.equal(sd2[k], sd[k]), k


@torch.no_grad()
def test_from_hf_of_a_transformers_model():
    # A model built by transformers itself (its own init and key names), loaded into llmfs.
    config = transformers.GPT2Config(vocab_size=61, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    ref = transformers.GPT2LMHeadModel(config).eval()
    cfg, sd = from_hf(config.to_dict(), ref.state_dict())
    assert cfg.mlp == "gelu_tanh" and cfg.dropout == 0.1
    m = Transformer(cfg).eval()
    m.load_state_dict(sd)
    x = torch.randint(0, 61, (1, 12))
    torch.testing.assert_close(m(x).logits, ref(input_ids=x).logits, atol=1e-5, rtol=1e-5)
    llama_cfg = transformers.LlamaConfig(vocab_size=61, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    llama = transformers.LlamaForCausalLM(llama_cfg).eval()
    cfg, sd = from_hf(llama_cfg.to_dict(), llama.state_dict())
    m = Transformer(cfg).eval()
    m.load_state_dict(sd)
    torch.testing.assert_close(m(x).logits, llama(input_ids=x).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kw, arch, message", [
    ({**GPT2, "window": 8}, "gpt2", "model.window = 8 cannot be exported to HF GPT-2"),
    ({**GPT2, "n_kv_heads": 2}, "gpt2", "model.n_kv_heads = 2 cannot be exported to HF GPT-2"),
    ({**GPT2, "tie_embeddings": False}, "gpt2", "model.tie_embeddings = False cannot be exported"),
    ({**GPT2, "mlp": "relu2"}, "gpt2", "model.mlp = 'relu2' cannot be exported to HF GPT-2"),
    ({**LLAMA, "n_experts": 4}, "llama", "model.n_experts = 4 cannot be exported to HF Llama"),
    ({**LLAMA, "mlp": "relu2"}, "llama", "model.mlp = 'relu2' cannot be exported to HF Llama"),
    ({**LLAMA, "window": 8}, "llama", "model.window = 8 cannot be exported to HF Llama"),
    ({**LLAMA, "norm": "layernorm"}, "llama", "model.norm = 'layernorm' cannot be exported"),
])
def test_inexpressible_configs_raise(kw, arch, message):
    cfg = from_dict(ModelConfig, kw)
    with torch.device("meta"):
        sd = Transformer(cfg).state_dict()
    with pytest.raises(ConfigError) as e:
        to_hf(cfg, sd, arch)
    assert message in str(e.value)


def test_from_hf_rejects_what_it_cannot_load():
    cfg, m = ours(LLAMA)
    hf_cfg, hf_sd = to_hf(cfg, m.state_dict())
    with pytest.raises(ConfigError, match="rope_type = 'llama3' is not supported"):
        from_hf({**hf_cfg, "rope_parameters": {"rope_type": "llama3", "rope_theta": 500.0}}, hf_sd)
    with pytest.raises(ConfigError, match="rope_type = 'linear' is not supported"):  # the older spelling
        from_hf({**hf_cfg, "rope_scaling": {"type": "linear", "factor": 4.0}}, hf_sd)
    with pytest.raises(ConfigError, match="model_type 'mistral' is not supported"):
        from_hf({**hf_cfg, "model_type": "mistral"}, hf_sd)
    with pytest.raises(ConfigError, match="unexpected"):
        from_hf(hf_cfg, {**hf_sd, "model.extra.weight": torch.zeros(1)})
