"""Checkpoint directories: the only code that reads or writes them (DESIGN.md section 5).

```
final/                      (or step-000500/)
  model.safetensors         weights of the unwrapped module; metadata {"format": "pt", "llmfs_tied": {...}}
  config.json               format_version, llmfs_version, kind, model config, lineage, sha256 of every file
  tokenizer.json            loadable by `tokenizers.Tokenizer.from_file`
  chat_template.jinja       chat models only: the chat template (llmfs/tokenizer/chat.py), for transformers too;
                            an imported transformers chat model keeps its own, with config.json's
                            extra.chat = {bos_token, eos_token, stop_ids} (llmfs/infer/chat_format.py)
  recipe.toml               the resolved recipe that produced it (optional)
  optimizer.safetensors     resume only: optimizer tensors; param groups and scalars in the metadata
  trainer_state.json        resume only: step, tokens seen, data position, seeds
```

Safety: no pickle anywhere, `torch.load` is never called. Atomicity: everything is written into `NAME.tmp/`,
fsynced, then renamed to `NAME`; a crash leaves either the old directory or the new one, never half of one.
The run directory's `latest` file (the name of the newest step directory) is rewritten last.

Loading (`open_checkpoint` then `load_weights`) checks the file set, `format_version`, the sha256 of every file
(which catches truncation and corruption), the tokenizer's vocabulary against the model's, and then the exact
tensor key set, shapes and dtypes against the module built from `config.json`, and that weights are finite
(saving refuses non-finite weights too, before anything is written).
Tied weights (embedding and head) are stored once; `llmfs_tied` records the alias.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from llmfs import __version__
from llmfs.atomic import write_text_atomic
from llmfs.errors import CheckpointError
from llmfs.tokenizer.chat import TEMPLATE_FILE

FORMAT_VERSION = 1
KINDS = ("causal_lm", "reward", "value")
MODEL_FILE, CONFIG_FILE, TOKENIZER_FILE = "model.safetensors", "config.json", "tokenizer.json"
RECIPE_FILE, OPTIMIZER_FILE, TRAINER_FILE = "recipe.toml", "optimizer.safetensors", "trainer_state.json"
REQUIRED_FILES = (MODEL_FILE, CONFIG_FILE, TOKENIZER_FILE)
STEP_DIR = re.compile(r"step-(\d+)")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ writing
def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _atomic_directory(final: Path) -> Iterator[Path]:
    """Yield an empty `final.tmp/`; on success fsync and rename it to `final`, on any failure remove it."""
    tmp, old = final.with_name(final.name + ".tmp"), final.with_name(final.name + ".old")
    if old.exists() and not final.exists():  # a crash between the two renames below: the old one is complete
        os.rename(old, final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        for f in tmp.iterdir():
            _fsync(f)
        _fsync(tmp)
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old)
        else:
            os.rename(tmp, final)
        _fsync(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _dedupe_tied(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Store tensors that share memory once: returns (unique tensors, {alias: stored name})."""
    seen: dict[tuple, str] = {}
    unique, tied = {}, {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
        if t.numel() > 0 and key in seen:
            tied[name] = seen[key]
        else:
            seen[key] = name
            unique[name] = t.detach().to("cpu").contiguous()
    return unique, tied


def flatten_optimizer_state(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer state dict as (tensors, JSON metadata), for safetensors without pickle. Parameter keys may
    be torch's integer ids or parameter names (`get_optimizer_state_dict`); tensors are named `state/KEY/NAME`."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in state["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state/{pid}/{name}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer_state(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of `flatten_optimizer_state`: a dict `Optimizer.load_state_dict` accepts."""
    def param_key(k: str) -> int | str:
        return int(k) if k.isdigit() else k

    state: dict[int | str, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, pid, name = key.split("/", 2)
        state.setdefault(param_key(pid), {})[name] = value
    for pid, entries in meta["scalars"].items():
        state.setdefault(param_key(pid), {}).update(entries)
    return {"state": state, "param_groups": [dict(g) for g in meta["param_groups"]]}


@dataclasses.dataclass(frozen=True)
class ResumeState:
    """What a trainer needs to continue exactly: optimizer tensors (flattened) and a JSON trainer state."""

    optimizer: Mapping[str, Any]  # Optimizer.state_dict()
    trainer: Mapping[str, Any]  # step, tokens seen, data position, seeds: JSON-serialisable


def _check_finite(state_dict: Mapping[str, torch.Tensor], directory: Path) -> None:
    """A checkpoint never holds NaN or infinite weights: refuse before anything is written."""
    for name, t in state_dict.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"refusing to save {directory}: tensor '{name}' contains NaN or infinite values "
                                  "(the run diverged); resume from an earlier checkpoint with a lower learning rate")


def save(directory: str | Path, *, kind: str, model_config: Mapping[str, Any],
         state_dict: Mapping[str, torch.Tensor], tokenizer_json: str | Path,
         recipe_toml: str | None = None, parent: Checkpoint | None = None,
         resume: ResumeState | None = None, extra: Mapping[str, Any] | None = None,
         side_weights: Mapping[str, Mapping[str, torch.Tensor]] | None = None) -> Path:
    """Write a checkpoint directory atomically and return its path.

    `tokenizer_json` is the path of a `tokenizer.json` to copy in. `state_dict` is the unwrapped module's
    (no `_orig_mod.` / `module.` prefixes). `extra` carries stage-specific JSON (e.g. reward statistics).
    `side_weights` are more modules a stage resumes with but later stages do not read (PPO's value model), one
    safetensors file each: {"value.safetensors": state_dict}; `read_weights(..., file=)` reads them back.
    """
    if kind not in KINDS:
        raise ValueError(f"checkpoint kind must be one of {KINDS}, got {kind!r}")
    directory = Path(directory)
    prefixed = [k for k in state_dict if k.startswith(("_orig_mod.", "module."))]
    if prefixed:
        raise ValueError(f"state_dict has wrapper prefixes ({prefixed[0]}); save the unwrapped module")
    for weights in (state_dict, *(side_weights or {}).values()):
        _check_finite(weights, directory)
    tensors, tied = _dedupe_tied(state_dict)
    with _atomic_directory(directory) as tmp:
        save_file(tensors, tmp / MODEL_FILE, metadata={"format": "pt", "llmfs_tied": json.dumps(tied)})
        for name, side in (side_weights or {}).items():
            if not name.endswith(".safetensors") or name in (MODEL_FILE, OPTIMIZER_FILE) or "/" in name:
                raise ValueError(f"side weights need a new file name ending in .safetensors, got {name!r}")
            side_tensors, side_tied = _dedupe_tied(side)
            save_file(side_tensors, tmp / name, metadata={"format": "pt", "llmfs_tied": json.dumps(side_tied)})
        shutil.copyfile(tokenizer_json, tmp / TOKENIZER_FILE)
        template = Path(tokenizer_json).with_name(TEMPLATE_FILE)
        if template.is_file():  # the chat template written beside the tokenizer (llmfs/tokenizer/chat.py)
            shutil.copyfile(template, tmp / TEMPLATE_FILE)
        if recipe_toml is not None:
            (tmp / RECIPE_FILE).write_text(recipe_toml, encoding="utf-8")
        if resume is not None:
            opt_tensors, opt_meta = flatten_optimizer_state(resume.optimizer)
            save_file(opt_tensors, tmp / OPTIMIZER_FILE,
                      metadata={"format": "pt", "llmfs_optimizer": json.dumps(opt_meta)})
            (tmp / TRAINER_FILE).write_text(json.dumps(dict(resume.trainer), indent=2), encoding="utf-8")
        files = {f.name: sha256_file(f) for f in sorted(tmp.iterdir())}
        config = {
            "format_version": FORMAT_VERSION,
            "llmfs_version": __version__,
            "kind": kind,
            "model": dict(model_config),
            "lineage": {
                "tokenizer_sha256": files[TOKENIZER_FILE],
                "recipe_sha256": files.get(RECIPE_FILE),
                "parent": None if parent is None else {"path": str(parent.path),
                                                       "model_sha256": parent.files[MODEL_FILE]},
            },
            "files": files,
            "extra": dict(extra or {}),
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")
    return directory


def save_step(run_dir: str | Path, step: int, *, keep_last: int, **kwargs: Any) -> Path:
    """Save `run_dir/step-NNNNNN/`, point `run_dir/latest` at it, then delete all but the newest `keep_last`."""
    run_dir = Path(run_dir)
    path = save(run_dir / f"step-{step:06d}", **kwargs)
    write_text_atomic(run_dir / "latest", path.name + "\n")
    steps = sorted((int(m.group(1)), p) for p in run_dir.iterdir()
                   if p.is_dir() and (m := STEP_DIR.fullmatch(p.name)))
    for _, old in steps[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old)
    return path


# ------------------------------------------------------------------------------------------------ reading
@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A validated checkpoint directory: its parsed config.json and paths to its files."""

    path: Path
    config: Mapping[str, Any]

    @property
    def kind(self) -> str:
        return self.config["kind"]

    @property
    def model_config(self) -> Mapping[str, Any]:
        return self.config["model"]

    @property
    def lineage(self) -> Mapping[str, Any]:
        return self.config["lineage"]

    @property
    def files(self) -> Mapping[str, str]:
        return self.config["files"]

    @property
    def extra(self) -> Mapping[str, Any]:
        return self.config["extra"]

    @property
    def tokenizer_path(self) -> Path:
        return self.path / TOKENIZER_FILE

    @property
    def has_resume_state(self) -> bool:
        return OPTIMIZER_FILE in self.files and TRAINER_FILE in self.files

    @property
    def recipe_toml(self) -> str | None:
        return (self.path / RECIPE_FILE).read_text(encoding="utf-8") if RECIPE_FILE in self.files else None


def resolve(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory (its `final/`, else the step named by `latest`)."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: checkpoint directory not found")
    if not p.is_dir():
        raise CheckpointError(f"{p}: is a file; give a checkpoint directory (one holding {CONFIG_FILE})")
    if (p / CONFIG_FILE).exists() or not ((p / "final").is_dir() or (p / "latest").is_file()):
        return p
    if (p / "final").is_dir():
        return p / "final"
    return p / (p / "latest").read_text(encoding="utf-8").strip()


def open_checkpoint(path: str | Path, *, verify_hashes: bool = True) -> Checkpoint:
    """Read and validate a checkpoint directory (everything except the tensors against a module)."""
    p = resolve(path)
    missing = [f for f in REQUIRED_FILES if not (p / f).is_file()]
    if missing:
        raise CheckpointError(f"{p}: not a complete llmfs checkpoint, missing {', '.join(missing)}")
    try:
        config = json.loads((p / CONFIG_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{p / CONFIG_FILE}: not valid JSON ({e})") from None
    version = config.get("format_version") if isinstance(config, dict) else None
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{p / CONFIG_FILE}: format_version {version!r} is not supported by llmfs "
                              f"{__version__} (it reads version {FORMAT_VERSION}); use the llmfs that wrote it")
    for key in ("kind", "model", "lineage", "files", "extra"):
        if key not in config:
            raise CheckpointError(f"{p / CONFIG_FILE}: missing key '{key}'")
    if config["kind"] not in KINDS:
        raise CheckpointError(f"{p / CONFIG_FILE}: kind {config['kind']!r} is not one of {', '.join(KINDS)}")
    for name, digest in config["files"].items():
        f = p / name
        if not f.is_file():
            raise CheckpointError(f"{f}: listed in config.json but missing")
        if verify_hashes and sha256_file(f) != digest:
            raise CheckpointError(f"{f}: contents do not match the sha256 recorded in config.json "
                                  "(the file is truncated, corrupted or was replaced)")
    ckpt = Checkpoint(p, config)
    if ckpt.lineage.get("tokenizer_sha256") != ckpt.files.get(TOKENIZER_FILE):
        raise CheckpointError(f"{p / CONFIG_FILE}: lineage.tokenizer_sha256 does not match tokenizer.json")
    _check_vocab(ckpt)
    return ckpt


def _check_vocab(ckpt: Checkpoint) -> None:
    from tokenizers import Tokenizer

    try:
        n_tok = Tokenizer.from_file(str(ckpt.tokenizer_path)).get_vocab_size(with_added_tokens=True)
    except Exception as e:  # tokenizers raises a bare Exception for unreadable files
        raise CheckpointError(f"{ckpt.tokenizer_path}: not a valid tokenizer.json ({e})") from None
    n_model = ckpt.model_config.get("vocab_size")
    if not isinstance(n_model, int) or n_tok > n_model:
        raise CheckpointError(f"{ckpt.path}: tokenizer.json has {n_tok} tokens but the model's vocab_size is "
                              f"{n_model}; ids past the embedding would crash: pair it with its own tokenizer")


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable safetensors file, truncated or corrupted ({e})") from None


def _tied_names(module: torch.nn.Module) -> dict[str, str]:
    _, tied = _dedupe_tied(module.state_dict())
    return tied


def load_weights(ckpt: Checkpoint, module: torch.nn.Module) -> None:
    """Load `model.safetensors` into `module` (built from `ckpt.model_config`) after checking it exactly."""
    module.load_state_dict(read_weights(ckpt, module), strict=True)


def read_weights(ckpt: Checkpoint, module: torch.nn.Module, file: str = MODEL_FILE) -> dict[str, torch.Tensor]:
    """The checked state dict of `model.safetensors` (or a side weights `file`) for `module` (tied aliases filled
    in), not yet loaded; `module` only supplies the expected names, shapes, dtypes and ties."""
    if file not in ckpt.files:
        raise CheckpointError(f"{ckpt.path}: has no {file} (written by a stage that keeps it; resume with the "
                              "stage that wrote this checkpoint)")
    path = ckpt.path / file
    stored, meta = _read_safetensors(path)
    tied = json.loads(meta.get("llmfs_tied", "{}"))
    expected = module.state_dict()
    if tied != _tied_names(module):
        raise CheckpointError(f"{path}: tied weights {tied} do not match the model's {_tied_names(module)} "
                              "(tie_embeddings differs between config.json and the weights)")
    have = set(stored) | set(tied)
    missing, unexpected = sorted(set(expected) - have), sorted(have - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path}: tensor names do not match the model built from config.json: "
                              f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                              f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    for name, t in stored.items():
        want = expected[name]
        if tuple(t.shape) != tuple(want.shape) or t.dtype != want.dtype:
            raise CheckpointError(f"{path}: tensor '{name}' is {t.dtype} {tuple(t.shape)} but the model "
                                  f"expects {want.dtype} {tuple(want.shape)}")
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"{path}: tensor '{name}' contains NaN or infinite values; the run that wrote "
                                  "it diverged: use an earlier checkpoint")
    full = dict(stored)
    full.update({alias: stored[source] for alias, source in tied.items()})
    return full


def load_resume_state(ckpt: Checkpoint) -> ResumeState:
    """The optimizer state dict and trainer state saved for resuming."""
    if not ckpt.has_resume_state:
        raise CheckpointError(f"{ckpt.path}: has no resume state ({OPTIMIZER_FILE}, {TRAINER_FILE}); "
                              "resume from a step-NNNNNN checkpoint or the run directory")
    tensors, meta = _read_safetensors(ckpt.path / OPTIMIZER_FILE)
    if "llmfs_optimizer" not in meta:
        raise CheckpointError(f"{ckpt.path / OPTIMIZER_FILE}: missing llmfs_optimizer metadata")
    optimizer = unflatten_optimizer_state(tensors, json.loads(meta["llmfs_optimizer"]))
    trainer = json.loads((ckpt.path / TRAINER_FILE).read_text(encoding="utf-8"))
    return ResumeState(optimizer=optimizer, trainer=trainer)


def summary(ckpt: Checkpoint) -> dict[str, Any]:
    """What `llmfs inspect` shows: kind, versions, model config, tensor and parameter counts, lineage, files."""
    with safe_open(str(ckpt.path / MODEL_FILE), framework="pt") as f:
        shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
        tied = json.loads((f.metadata() or {}).get("llmfs_tied", "{}"))
    n_params = sum(int(torch.Size(s).numel()) for s in shapes.values())
    trainer = (json.loads((ckpt.path / TRAINER_FILE).read_text(encoding="utf-8"))
               if ckpt.has_resume_state else None)
    return {
        "path": str(ckpt.path),
        "kind": ckpt.kind,
        "format_version": ckpt.config["format_version"],
        "llmfs_version": ckpt.config["llmfs_version"],
        "parameters": n_params,
        "tensors": len(shapes),
        "tied": tied,
        "model": dict(ckpt.model_config),
        "lineage": dict(ckpt.lineage),
        "files": dict(ckpt.files),
        "resume": trainer,
        "extra": dict(ckpt.extra),
    }
