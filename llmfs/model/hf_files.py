"""`llmfs export hf` / `llmfs import hf`: Hugging Face model directories on disk, through `hf.py`'s conversions.

An exported directory holds `config.json` (the `transformers` config), `model.safetensors`, `tokenizer.json`,
`tokenizer_config.json` and `generation_config.json` (plus the chat template of a chat model, with generation
stopping at its end-of-turn token), so `AutoModelForCausalLM.from_pretrained(OUT)` and
`AutoTokenizer.from_pretrained(OUT)` load it offline. Import reads such a directory (ours, or a small Llama /
GPT-2 saved by `transformers` as safetensors, single file or sharded with `model.safetensors.index.json`) into
an llmfs checkpoint. Written atomically (`OUT.tmp/` then rename) like every llmfs output.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from llmfs import checkpoint as ck
from llmfs.config import from_dict
from llmfs.errors import CheckpointError, LlmfsError
from llmfs.model.config import ModelConfig
from llmfs.model.hf import from_hf, to_hf
from llmfs.tokenizer.chat import CHAT_TEMPLATE_JINJA, END


def export_hf(checkpoint: str | Path, out: str | Path, arch: str | None = None) -> Path:
    """Write the causal LM of `checkpoint` as a `transformers` directory; returns `out`."""
    from llmfs.model.transformer import Transformer

    ckpt = ck.open_checkpoint(checkpoint)
    if ckpt.kind != "causal_lm":
        raise LlmfsError(f"{ckpt.path}: is a '{ckpt.kind}' checkpoint; only causal_lm checkpoints export to HF")
    cfg = from_dict(ModelConfig, dict(ckpt.model_config), source=str(ckpt.path / ck.CONFIG_FILE))
    state = ck.read_weights(ckpt, Transformer(cfg))  # names, shapes and ties to check the file against
    hf_config, hf_state = to_hf(cfg, state, arch)
    out = Path(out)
    if out.exists():
        raise LlmfsError(f"{out}: already exists; choose another output directory or delete it")
    tokens = list(_special_ids(ckpt.tokenizer_path))
    eot = tokens[0] if tokens else None
    template = ckpt.path / ck.TEMPLATE_FILE
    chat = template.is_file()  # a chat model: replies end at <|end|>, so generation stops there too
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2), encoding="utf-8")
        save_file({k: v.contiguous() for k, v in hf_state.items()}, tmp / "model.safetensors",
                  metadata={"format": "pt"})
        shutil.copyfile(ckpt.tokenizer_path, tmp / "tokenizer.json")
        tok_config = {
            "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": cfg.max_seq_len,
            "eos_token": eot, "bos_token": eot, "unk_token": None, "clean_up_tokenization_spaces": False,
            "add_bos_token": False, "add_eos_token": False}
        eot_id = _token_id(ckpt.tokenizer_path, eot)
        eos_ids: int | list[int] | None = eot_id
        imported = dict(ckpt.extra.get("chat") or {})  # a transformers chat model brought in by import_hf
        generation = dict(ckpt.extra.get("generation") or {})  # any model brought in by import_hf
        if generation.get("stop_ids"):  # its own end of text (Llama 3's <|end_of_text|>), not the first special
            eos_ids = list(generation["stop_ids"])
            by_id = {i: t for t, i in _special_ids(ckpt.tokenizer_path).items()}
            prefix = list(generation.get("prompt_prefix_ids") or [])
            tok_config.update(eos_token=by_id.get(eos_ids[0], eot), bos_token=by_id.get(prefix[0]) if prefix else None,
                              add_bos_token=bool(prefix))
            eot_id = prefix[0] if prefix else None  # generation_config's bos_token_id
        if chat:
            shutil.copyfile(template, tmp / ck.TEMPLATE_FILE)
            tok_config["chat_template"] = template.read_text(encoding="utf-8").strip()
            eos_ids = [eot_id, _token_id(ckpt.tokenizer_path, END)]
        if chat and imported.get("stop_ids"):  # its own tokens, not llmfs's <|end|>
            tok_config.update(eos_token=imported.get("eos_token"), bos_token=imported.get("bos_token"))
            eos_ids = list(imported["stop_ids"])
        (tmp / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2), encoding="utf-8")
        (tmp / "generation_config.json").write_text(json.dumps(
            {"eos_token_id": eos_ids, "bos_token_id": eot_id}, indent=2), encoding="utf-8")
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def import_hf(directory: str | Path, out: str | Path) -> Path:
    """Read a `transformers` Llama / GPT-2 directory into an llmfs checkpoint at `out`."""
    d = Path(directory)
    config_path = d / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{d}: no config.json; give a directory saved by transformers or llmfs export hf")
    if not (d / "tokenizer.json").is_file():
        raise CheckpointError(f"{d}: no tokenizer.json (an llmfs checkpoint carries its tokenizer); save the "
                              "fast tokenizer into the directory first")
    hf_config = json.loads(config_path.read_text(encoding="utf-8"))
    # llmfs checkpoints hold float32 weights (the model is built in float32, and training keeps fp32 masters
    # under autocast); hub models are often stored in bf16 / fp16, which widen to float32 exactly
    weights = {k: v.float() if v.is_floating_point() else v for k, v in _read_weights(d).items()}
    cfg, ours = from_hf(hf_config, weights)
    extra: dict = {"stage": "import", "source": str(d), "generation": _generation(d)}
    template, chat = _chat_template(d)
    if template is None or template.strip() == CHAT_TEMPLATE_JINJA:  # a base model, or llmfs's own export
        return ck.save(out, kind="causal_lm", model_config=dataclasses.asdict(cfg), state_dict=ours,
                       tokenizer_json=d / "tokenizer.json", extra=extra)
    # a transformers chat model: its template travels beside the tokenizer, with what `llmfs chat` needs
    # to render it (bos / eos strings) and to end a reply (chat_format.py)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(d / "tokenizer.json", Path(tmp) / "tokenizer.json")
        (Path(tmp) / ck.TEMPLATE_FILE).write_text(template, encoding="utf-8")
        return ck.save(out, kind="causal_lm", model_config=dataclasses.asdict(cfg), state_dict=ours,
                       tokenizer_json=Path(tmp) / "tokenizer.json", extra={**extra, "chat": chat})


def _read_json(f: Path) -> dict:
    """A transformers side file (tokenizer_config.json, generation_config.json); {} when absent."""
    try:
        doc = json.loads(f.read_text(encoding="utf-8")) if f.is_file() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{f}: not valid JSON ({e})") from None
    return doc if isinstance(doc, dict) else {}


def _token(tok_config: dict, key: str) -> str | None:
    value = tok_config.get(key)  # "<s>", or {"content": "<s>", ...} as older tokenizer_config.json files write it
    return value.get("content") if isinstance(value, dict) else value if isinstance(value, str) else None


def _end_ids(d: Path, tok_config: dict, gen_config: dict) -> list[int]:
    """The ids that end generation: `generation_config.json`'s `eos_token_id` (one or a list), else the id of
    `tokenizer_config.json`'s `eos_token`; [] when neither says."""
    stop = gen_config.get("eos_token_id")
    stop_ids = [stop] if isinstance(stop, int) else [i for i in stop or [] if isinstance(i, int)]
    eos = _token_id(d / "tokenizer.json", _token(tok_config, "eos_token"))
    return stop_ids or ([eos] if eos is not None else [])


def _generation(d: Path) -> dict:
    """What `llmfs generate` needs to treat a plain prompt as transformers does, beyond the tokenizer.json's
    vocabulary: "stop_ids" (see `_end_ids`: Llama 3's <|end_of_text|>, not its first special token) and
    "prompt_prefix_ids", the ids its tokenizer puts before a text when asked for special tokens (the
    post-processor's, e.g. Llama's BOS; GPT-2 has none; an appended EOS is not kept)."""
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    except Exception as e:  # noqa: BLE001 - tokenizers raises plain Exceptions for a malformed file
        raise CheckpointError(f"{d / 'tokenizer.json'}: not a tokenizer.json the tokenizers library reads ({e})") \
            from None
    plain = tok.encode("a", add_special_tokens=False).ids
    full = tok.encode("a", add_special_tokens=True).ids
    at = next((k for k in range(len(full) - len(plain) + 1) if full[k:k + len(plain)] == plain), 0)
    return {"stop_ids": _end_ids(d, _read_json(d / "tokenizer_config.json"), _read_json(d / "generation_config.json")),
            "prompt_prefix_ids": full[:at]}


def _chat_template(d: Path) -> tuple[str | None, dict]:
    """A transformers directory's chat template (`chat_template.jinja`, else `tokenizer_config.json`'s
    `chat_template`, the entry named "default" when it is a list) and {"bos_token", "eos_token", "stop_ids"}:
    the ids that end a reply (`_end_ids`)."""
    tok_config = _read_json(d / "tokenizer_config.json")
    gen_config = _read_json(d / "generation_config.json")
    template = tok_config.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
        template = next((t.get("template") for t in template if isinstance(t, dict) and t.get("name") == "default"),
                        None)
    if (d / ck.TEMPLATE_FILE).is_file():
        template = (d / ck.TEMPLATE_FILE).read_text(encoding="utf-8")
    if not isinstance(template, str):
        return None, {}

    bos, eos = _token(tok_config, "bos_token"), _token(tok_config, "eos_token")
    stop_ids = _end_ids(d, tok_config, gen_config)
    if not stop_ids:
        raise CheckpointError(f"{d}: has a chat template but no end-of-reply token (generation_config.json's "
                              "eos_token_id or tokenizer_config.json's eos_token); add one so replies can end")
    return template, {"bos_token": bos, "eos_token": eos, "stop_ids": stop_ids}


def _read_weights(d: Path) -> dict:
    files = [d / "model.safetensors"] if (d / "model.safetensors").is_file() else []
    index = d / "model.safetensors.index.json"
    if not files and index.is_file():
        names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        files = [d / n for n in names]
    if not files:
        raise CheckpointError(f"{d}: no model.safetensors (or sharded index); llmfs reads safetensors only, "
                              "never pickled .bin weights: re-save with safe_serialization=True")
    state = {}
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            state.update({k: fh.get_tensor(k) for k in fh.keys()})
    return state


def _special_ids(tokenizer_json: Path) -> dict[str, int]:
    """The special tokens of a tokenizer.json and their ids, in the file's order."""
    doc = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    return {t["content"]: t["id"] for t in doc.get("added_tokens", []) if t.get("special")}


def _token_id(tokenizer_json: Path, token: str | None) -> int | None:
    if token is None:
        return None
    doc = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    return next((t["id"] for t in doc.get("added_tokens", []) if t["content"] == token), None)
