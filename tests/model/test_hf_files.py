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


@pytest.mark.parametrize("arch, dtype", [("gpt2", torch.float32), ("llama", torch.float32),
                                         ("llama", torch.bfloat16), ("gpt2", torch.float16)])
def test_import_of_a_directory_saved_by_transformers(tmp_path, tokenizer_json, arch, dtype):
    """A model made and saved by transformers itself (its init, its file layout: the tied lm_head left out of
    the file, weights sharded over several files with an index, bf16 / fp16 as on the hub) imports with the
    same logits (its half-precision weights widened to float32, exactly)."""
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
    ref.to(dtype).save_pretrained(tmp_path / "hf", max_shard_size="20KB")  # shards + model.safetensors.index.json
    ref.float()  # the reference computes in float32 from the same (rounded) weights
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


CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
          "{% endif %}")


def test_a_transformers_chat_model_imports_with_its_template_and_chats(tmp_path, monkeypatch, capsys):
    """A ChatML model saved by transformers (template in tokenizer_config.json, end of reply in
    generation_config.json): `llmfs import hf` keeps its template, `llmfs chat` renders conversations to the ids
    transformers' apply_chat_template gives and talks over stdin."""
    import io

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from llmfs.infer.chat_format import chat_format
    from llmfs.infer.load import load_tokenizer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["the cat sat on the mat. ", "hello there, how are you?"] * 50, trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"]))
    hf_dir = tmp_path / "hf"
    config = transformers.LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=128, tie_word_embeddings=True)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(hf_dir)
    tok.save(str(hf_dir / "tokenizer.json"))
    end = tok.token_to_id("<|im_end|>")
    (hf_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": CHATML, "eos_token": "<|im_end|>",
        "bos_token": None, "add_bos_token": False}))
    (hf_dir / "generation_config.json").write_text(json.dumps({"eos_token_id": end}))
    assert main(["import", "hf", str(hf_dir), str(tmp_path / "ours")]) == 0
    ckpt = ck.open_checkpoint(tmp_path / "ours")
    assert ckpt.extra["chat"] == {"bos_token": None, "eos_token": "<|im_end|>", "stop_ids": [end]}

    fmt = chat_format(load_tokenizer(ckpt.tokenizer_path), ckpt)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"},
                {"role": "assistant", "content": "the cat"}, {"role": "user", "content": "how are you?"}]
    theirs = transformers.AutoTokenizer.from_pretrained(hf_dir).apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True)
    theirs = theirs["input_ids"] if not isinstance(theirs, list) else theirs
    assert fmt.render_prompt(messages) == list(theirs) and fmt.stop_ids == (end,)

    saved = tmp_path / "conv.json"
    monkeypatch.setattr("sys.stdin", io.StringIO(f"hello there\nhow are you?\n/save {saved}\n"))
    assert main(["chat", str(tmp_path / "ours"), "--max-new-tokens", "6", "--seed", "0"]) == 0, capsys.readouterr()
    roles = [m["role"] for m in json.loads(saved.read_text())["messages"]]
    assert roles and all(a != b for a, b in zip(roles, roles[1:])) and roles[0] == "user"
    # and back out: the export keeps the model's own template and end-of-reply token
    assert main(["export", "hf", str(tmp_path / "ours"), str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "tokenizer_config.json").read_text())
    assert again["chat_template"] == CHATML and again["eos_token"] == "<|im_end|>"
    assert json.loads((tmp_path / "again" / "generation_config.json").read_text())["eos_token_id"] == [end]


def test_an_imported_llama3_style_base_model_prompts_and_stops_as_transformers_does(tmp_path, capsys):
    """Llama 3's tokenizer puts <|begin_of_text|> before a text (its post-processor), and generation ends at
    <|end_of_text|>, not at its first special token: the import records both, and `llmfs generate` on the
    imported model reads the prompt as transformers' tokenizer does and continues it as `generate` does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["the cat sat on the mat. ", "hello there, how are you?"] * 50, trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|begin_of_text|>", "<|end_of_text|>"]))
    bos, end = tok.token_to_id("<|begin_of_text|>"), tok.token_to_id("<|end_of_text|>")
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                       special_tokens=[("<|begin_of_text|>", bos)])
    hf_dir = tmp_path / "hf"
    config = transformers.LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=64, bos_token_id=bos, eos_token_id=end)
    torch.manual_seed(0)
    ref = transformers.LlamaForCausalLM(config).eval()
    ref.save_pretrained(hf_dir)
    tok.save(str(hf_dir / "tokenizer.json"))
    (hf_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
        "eos_token": "<|end_of_text|>"}))
    assert main(["import", "hf", str(hf_dir), str(tmp_path / "ours")]) == 0
    assert ck.open_checkpoint(tmp_path / "ours").extra["generation"] == {"stop_ids": [end],
                                                                         "prompt_prefix_ids": [bos]}

    ids = transformers.AutoTokenizer.from_pretrained(hf_dir)("the cat", return_tensors="pt").input_ids
    assert ids[0, 0] == bos
    with torch.no_grad():
        theirs = ref.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=end, pad_token_id=end)
    new = theirs[0, ids.shape[1]:].tolist()
    capsys.readouterr()
    assert main(["generate", str(tmp_path / "ours"), "-p", "the cat", "--json", "--temperature", "0",
                 "--max-new-tokens", "12"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["prompt_tokens"] == ids.shape[1]
    assert row["new_tokens"] == len(new) and row["completion"] == tok.decode([i for i in new if i != end])
    assert main(["export", "hf", str(tmp_path / "ours"), str(tmp_path / "again")]) == 0
    assert json.loads((tmp_path / "again" / "generation_config.json").read_text()) == {"eos_token_id": [end],
                                                                                       "bos_token_id": bos}
    again = json.loads((tmp_path / "again" / "tokenizer_config.json").read_text())
    assert (again["eos_token"], again["bos_token"]) == ("<|end_of_text|>", "<|begin_of_text|>")
    ids_again = transformers.AutoTokenizer.from_pretrained(tmp_path / "again")("the cat").input_ids
    assert ids_again == ids[0].tolist()  # transformers reads the exported tokenizer as the original


def test_import_of_a_chat_template_without_an_end_of_reply_token_is_refused(tmp_path, tokenizer_json, capsys):
    path, _ = make_checkpoint(tmp_path, tokenizer_json)
    assert main(["export", "hf", str(path), str(tmp_path / "hf")]) == 0
    (tmp_path / "hf" / "tokenizer_config.json").write_text(json.dumps({"chat_template": CHATML}))
    (tmp_path / "hf" / "generation_config.json").write_text("{}")
    assert main(["import", "hf", str(tmp_path / "hf"), str(tmp_path / "x")]) == 2
    assert "no end-of-reply token" in capsys.readouterr().err
