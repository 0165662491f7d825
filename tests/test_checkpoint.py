"""Checkpoint contract: round trips, atomic saves, and one clear refusal per kind of damage."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open

from llmfs import checkpoint as ck
from llmfs.errors import CheckpointError


class TinyLM(torch.nn.Module):
    def __init__(self, vocab: int = 300, d: int = 8, tie: bool = True, extra: bool = False):
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(vocab, d)
        self.norm = torch.nn.LayerNorm(d)
        self.lm_head = torch.nn.Linear(d, vocab, bias=False)
        if tie:
            self.lm_head.weight = self.embed_tokens.weight
        if extra:
            self.gate = torch.nn.Linear(d, d)

    def forward(self, ids):
        return self.lm_head(self.norm(self.embed_tokens(ids)))


def cfg(vocab=300, d=8, tie=True):
    return {"vocab_size": vocab, "d_model": d, "tie_embeddings": tie}


def save(path, model, tokenizer_json, **kw):
    kw.setdefault("model_config", cfg(tie=model.lm_head.weight is model.embed_tokens.weight))
    return ck.save(path, kind="causal_lm", state_dict=model.state_dict(), tokenizer_json=tokenizer_json, **kw)


def test_round_trip_weights_with_tied_embedding_stored_once(tmp_path, tokenizer_json):
    torch.manual_seed(0)
    model = TinyLM()
    path = save(tmp_path / "final", model, tokenizer_json, recipe_toml="[run]\nname = 'x'\n",
                extra={"note": 1})
    with safe_open(str(path / ck.MODEL_FILE), framework="pt") as f:
        assert sorted(f.keys()) == ["embed_tokens.weight", "norm.bias", "norm.weight"]
        assert f.metadata()["format"] == "pt"
    ckpt = ck.open_checkpoint(path)
    assert ckpt.kind == "causal_lm" and ckpt.model_config == cfg() and ckpt.extra == {"note": 1}
    assert ckpt.recipe_toml == "[run]\nname = 'x'\n"
    assert ckpt.lineage["tokenizer_sha256"] == ck.sha256_file(tokenizer_json)
    assert ckpt.lineage["recipe_sha256"] == ck.sha256_file(path / ck.RECIPE_FILE)
    fresh = TinyLM()
    ck.load_weights(ckpt, fresh)
    assert fresh.lm_head.weight is fresh.embed_tokens.weight
    for k, v in model.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v, rtol=0, atol=0)
    child = save(tmp_path / "child", model, tokenizer_json, parent=ckpt)
    assert ck.open_checkpoint(child).lineage["parent"] == {"path": str(path),
                                                           "model_sha256": ckpt.files[ck.MODEL_FILE]}


def test_untied_model_round_trip_and_tie_mismatch_refused(tmp_path, tokenizer_json):
    model = TinyLM(tie=False)
    ckpt = ck.open_checkpoint(save(tmp_path / "c", model, tokenizer_json))
    fresh = TinyLM(tie=False)
    ck.load_weights(ckpt, fresh)
    torch.testing.assert_close(fresh.lm_head.weight, model.lm_head.weight, rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="tied weights .* do not match"):
        ck.load_weights(ckpt, TinyLM(tie=True))


def _train(model, opt, steps, seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        ids = torch.randint(0, 300, (4, 6), generator=g)
        loss = torch.nn.functional.cross_entropy(model(ids).flatten(0, 1), ids.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_optimizer_round_trip_resumes_exactly(tmp_path, tokenizer_json):
    torch.manual_seed(0)
    ref = TinyLM()
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    _train(ref, ref_opt, 3, seed=1)
    ck_path = save(tmp_path / "step", ref, tokenizer_json,
                   resume=ck.ResumeState(optimizer=ref_opt.state_dict(), trainer={"step": 3, "tokens": 72}))
    _train(ref, ref_opt, 3, seed=2)

    ckpt = ck.open_checkpoint(ck_path)
    model = TinyLM()
    ck.load_weights(ckpt, model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    state = ck.load_resume_state(ckpt)
    opt.load_state_dict(state.optimizer)
    assert state.trainer == {"step": 3, "tokens": 72}
    _train(model, opt, 3, seed=2)
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v, rtol=0, atol=0)


def test_no_resume_state_is_a_clear_error(tmp_path, tokenizer_json):
    ckpt = ck.open_checkpoint(save(tmp_path / "final", TinyLM(), tokenizer_json))
    assert not ckpt.has_resume_state
    with pytest.raises(CheckpointError, match="has no resume state"):
        ck.load_resume_state(ckpt)


def test_failure_during_save_keeps_previous_checkpoint_and_leaves_nothing_half(tmp_path, tokenizer_json,
                                                                             monkeypatch):
    torch.manual_seed(0)
    old = TinyLM()
    path = save(tmp_path / "final", old, tokenizer_json)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ck.shutil, "copyfile", boom)  # fails after model.safetensors was written
    with pytest.raises(OSError, match="disk full"):
        save(tmp_path / "final", TinyLM(), tokenizer_json)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]
    fresh = TinyLM()
    ck.load_weights(ck.open_checkpoint(path), fresh)
    torch.testing.assert_close(fresh.embed_tokens.weight, old.embed_tokens.weight, rtol=0, atol=0)


def test_stale_tmp_from_a_crash_is_ignored_and_replaced(tmp_path, tokenizer_json):
    (tmp_path / "final.tmp").mkdir()
    (tmp_path / "final.tmp" / ck.MODEL_FILE).write_bytes(b"half")
    with pytest.raises(CheckpointError, match="checkpoint directory not found"):
        ck.open_checkpoint(tmp_path / "final")
    save(tmp_path / "final", TinyLM(), tokenizer_json)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]
    ck.open_checkpoint(tmp_path / "final")


def test_crash_between_renames_recovers_old_directory(tmp_path, tokenizer_json):
    path = save(tmp_path / "final", TinyLM(), tokenizer_json)
    path.rename(tmp_path / "final.old")  # state after the first of the two renames
    save(tmp_path / "final", TinyLM(), tokenizer_json)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_save_step_keeps_last_k_and_points_latest(tmp_path, tokenizer_json):
    for step in (100, 200, 300, 400):
        ck.save_step(tmp_path, step, keep_last=2, kind="causal_lm", model_config=cfg(),
                     state_dict=TinyLM().state_dict(), tokenizer_json=tokenizer_json)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-000300", "step-000400"]
    assert ck.resolve(tmp_path) == tmp_path / "step-000400"
    save(tmp_path / "final", TinyLM(), tokenizer_json)
    assert ck.resolve(tmp_path) == tmp_path / "final"


# ------------------------------------------------------------------------------- one refusal per damage
@pytest.fixture
def saved(tmp_path, tokenizer_json):
    torch.manual_seed(0)
    return save(tmp_path / "final", TinyLM(), tokenizer_json)


def test_truncated_safetensors_refused(saved):
    data = (saved / ck.MODEL_FILE).read_bytes()
    (saved / ck.MODEL_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model.safetensors: contents do not match the sha256"):
        ck.open_checkpoint(saved)
    ckpt = ck.open_checkpoint(saved, verify_hashes=False)
    with pytest.raises(CheckpointError, match=r"model.safetensors: unreadable safetensors file, truncated"):
        ck.load_weights(ckpt, TinyLM())


def test_corrupted_byte_refused(saved):
    data = bytearray((saved / ck.MODEL_FILE).read_bytes())
    data[-5] ^= 0xFF
    (saved / ck.MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated, corrupted or was replaced"):
        ck.open_checkpoint(saved)


def test_missing_file_refused(saved):
    (saved / ck.TOKENIZER_FILE).unlink()
    with pytest.raises(CheckpointError, match="not a complete llmfs checkpoint, missing tokenizer.json"):
        ck.open_checkpoint(saved)


def test_unknown_format_version_refused(saved):
    config = json.loads((saved / ck.CONFIG_FILE).read_text())
    config["format_version"] = 99
    (saved / ck.CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"format_version 99 is not supported .* reads version 1"):
        ck.open_checkpoint(saved)


def test_wrong_shape_refused(saved):
    with pytest.raises(CheckpointError, match=r"tensor 'embed_tokens.weight' is torch.float32 \(300, 8\) but the "
                                              r"model expects torch.float32 \(300, 16\)"):
        ck.load_weights(ck.open_checkpoint(saved), TinyLM(d=16))


def test_wrong_dtype_refused(saved):
    with pytest.raises(CheckpointError, match="is torch.float32 .* expects torch.float64"):
        ck.load_weights(ck.open_checkpoint(saved), TinyLM().double())


def test_missing_and_extra_tensors_refused(saved):
    with pytest.raises(CheckpointError, match=r"missing \['gate.bias', 'gate.weight'\], unexpected \[\]"):
        ck.load_weights(ck.open_checkpoint(saved), TinyLM(extra=True))

    class Smaller(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = torch.nn.Embedding(300, 8)
            self.lm_head = torch.nn.Linear(8, 300, bias=False)
            self.lm_head.weight = self.embed_tokens.weight

    with pytest.raises(CheckpointError, match=r"missing \[\], unexpected \['norm.bias', 'norm.weight'\]"):
        ck.load_weights(ck.open_checkpoint(saved), Smaller())


def test_nan_weights_are_never_saved_and_refused_on_load(tmp_path, tokenizer_json):
    model = TinyLM()
    with torch.no_grad():
        model.norm.weight[3] = float("nan")
    with pytest.raises(CheckpointError, match=r"refusing to save .*final: tensor 'norm.weight' contains NaN"):
        save(tmp_path / "final", model, tokenizer_json)
    assert not (tmp_path / "final").exists() and list(tmp_path.iterdir()) == []  # nothing half-written
    with pytest.raises(CheckpointError, match=r"tensor 'value.weight' contains NaN or infinite"):
        save(tmp_path / "final", TinyLM(), tokenizer_json,
             side_weights={"value.safetensors": {"value.weight": torch.tensor([1.0, float("inf")])}})
    # a file written by something else (or damaged) is still refused when it is loaded
    path = save(tmp_path / "final", TinyLM(), tokenizer_json)
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path / ck.MODEL_FILE))
    tensors["norm.weight"][3] = float("nan")
    with safe_open(str(path / ck.MODEL_FILE), "pt") as f:
        metadata = f.metadata()
    save_file(tensors, str(path / ck.MODEL_FILE), metadata=metadata)
    with pytest.raises(CheckpointError, match="tensor 'norm.weight' contains NaN or infinite values"):
        ck.load_weights(ck.open_checkpoint(path, verify_hashes=False), TinyLM())


def test_vocab_mismatch_refused(tmp_path, tokenizer_json):
    path = save(tmp_path / "final", TinyLM(vocab=100), tokenizer_json, model_config=cfg(vocab=100))
    with pytest.raises(CheckpointError, match=r"tokenizer.json has 280 tokens but the model's vocab_size is 100"):
        ck.open_checkpoint(path)


def test_replaced_tokenizer_refused(saved, tmp_path):
    from tests.conftest import make_tokenizer_json

    make_tokenizer_json(tmp_path / "other.json", vocab_size=270)
    shutil.copyfile(tmp_path / "other.json", saved / ck.TOKENIZER_FILE)
    with pytest.raises(CheckpointError, match="tokenizer.json: contents do not match the sha256"):
        ck.open_checkpoint(saved)


def test_not_a_checkpoint_directory(tmp_path):
    with pytest.raises(CheckpointError, match="not a complete llmfs checkpoint, missing model.safetensors"):
        ck.open_checkpoint(tmp_path)
    (tmp_path / "f").write_text("x")
    with pytest.raises(CheckpointError, match="is a file"):
        ck.open_checkpoint(tmp_path / "f")


def test_wrapper_prefixes_rejected_at_save(tmp_path, tokenizer_json):
    state = {f"_orig_mod.{k}": v for k, v in TinyLM(tie=False).state_dict().items()}
    with pytest.raises(ValueError, match="wrapper prefixes"):
        ck.save(tmp_path / "x", kind="causal_lm", model_config=cfg(), state_dict=state, tokenizer_json=tokenizer_json)
