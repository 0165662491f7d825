"""`llmfs export hf` / `import hf`: transformers loads the export with equal logits; import restores it."""

from __future__ import annotations

import json

import pytest
import torch

from llmfs import checkpoint as ck
from llmfs.cli import main
from llmfs.config import from_dict
from llmfs.model.config import ModelConfig
from llmfs.model.transformer import Transformer

transformers = pytest.importorskip("transformers")


def make_checkpoint(tmp_path, tokenizer_json, **model):
    cfg = ModelConfig(vocab_size=300, max_seq_len=32, d_model=32, n_layers=2, n_heads=4, **model)
    net = Transformer(cfg, generator=torch.Generator().manual_seed(0))
    import dataclasses

    path = ck.save(tmp_path / "ckpt", kind="causal_lm", model_config=dataclasses.asdict(cfg),
                   state_dict=net.state_dict(), tokenizer_json=tokenizer_json)
    return path, net.eval()


@pytest.mark.parametrize("model", [dict(n_kv_heads=2), dict(n_kv_heads=1, tie_embeddings=False),
                                   dict(position="learned", norm="layernorm", mlp="gelu", bias=True)],
                         ids=["llama-gqa-tied", "llama-mqa-untied", "gpt2"])
def test_export_loads_in_transformers_and_imports_back(tmp_path, tokenizer_json, model):
    path, net = make_checkpoint(tmp_path, tokenizer_json, **model)
    assert main(["export", "hf", str(path), str(tmp_path / "hf")]) == 0
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(0, 300, (2, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, net(ids).logits, rtol=1e-5, atol=1e-5)
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    from tokenizers import Tokenizer

    text = "the cat sat on the mat.<|endoftext|>"
    assert tok(text)["input_ids"] == Tokenizer.from_file(str(tokenizer_json)).encode(text).ids
    assert tok.eos_token == "<|endoftext|>"

    assert main(["import", "hf", str(tmp_path / "hf"), str(tmp_path / "back")]) == 0
    back = ck.open_checkpoint(tmp_path / "back")
    assert back.model_config == ck.open_checkpoint(path).model_config
    again = Transformer(from_dict(ModelConfig, dict(back.model_config)))
    ck.load_weights(back, again)
    for k, v in net.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v, rtol=0, atol=0)


def test_export_refusals(tmp_path, tokenizer_json, capsys):
    path, _ = make_checkpoint(tmp_path, tokenizer_json, n_experts=4)
    assert main(["export", "hf", str(path), str(tmp_path / "hf")]) == 2
    assert "n_experts" in capsys.readouterr().err
    assert not (tmp_path / "hf").exists() and not (tmp_path / "hf.tmp").exists()
    (tmp_path / "plain").mkdir()
    assert main(["import", "hf", str(tmp_path / "plain"), str(tmp_path / "x")]) == 2
    assert "no config.json" in capsys.readouterr().err
    (tmp_path / "plain" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "plain" / "tokenizer.json").write_text("{}")
    assert main(["import", "hf", str(tmp_path / "plain"), str(tmp_path / "x")]) == 2
    assert "never pickled .bin weights" in capsys.readouterr().err


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_import_of_a_directory_saved_by_transformers(tmp_path, tokenizer_json, arch):
    """A model made and saved by transformers itself (its init, its file layout: the tied lm_head left out of
    the file, weights sharded over several files with an index) imports with the same logits."""
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(tokenizer_json)).get_vocab_size()
    torch.manual_seed(0)
    if arch == "gpt2":
        config = transformers.GPT2Config(vocab_size=vocab, n_positions=32, n_embd=32, n_layer=2, n_head=4)
        ref = transformers.GPT2LMHeadModel(config).eval()
    else:
        config = transformers.LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                          max_position_embeddings=32, tie_word_embeddings=True)
        ref = transformers.LlamaForCausalLM(config).eval()
    ref.save_pretrained(tmp_path / "hf", max_shard_size="20KB")  # several shards + model.safetensors.index.json
    import shutil

    shutil.copyfile(tokenizer_json, tmp_path / "hf" / "tokenizer.json")
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    assert not (tmp_path / "hf" / "model.safetensors").exists()
    assert main(["import", "hf", str(tmp_path / "hf"), str(tmp_path / "ours")]) == 0
    ckpt = ck.open_checkpoint(tmp_path / "ours")
    net = Transformer(from_dict(ModelConfig, dict(ckpt.model_config))).eval()
    ck.load_weights(ckpt, net)
    ids = torch.randint(0, vocab, (2, 13), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(net(ids).logits, ref(input_ids=ids).logits, rtol=1e-5, atol=1e-5)
