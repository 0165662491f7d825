"""The model: `Transformer(ModelConfig)` and its parts.

Importing `llmfs.model` or `llmfs.model.config` imports no torch (recipes are checked before torch loads), so
the names below are resolved lazily on first access (PEP 562 module `__getattr__`).
Public API: ModelConfig, Transformer, TransformerOutput, StaticKVCache, RollingKVCache, ScalarHead,
positions_from_segments; registries NORMS, POSITIONS, MLPS, ATTENTION_IMPLS; HF conversion in llmfs.model.hf.
"""

import importlib

_WHERE = {
    "ModelConfig": "config", "Transformer": "transformer", "TransformerOutput": "transformer",
    "StaticKVCache": "kv_cache", "RollingKVCache": "kv_cache", "ScalarHead": "heads",
    "positions_from_segments": "position", "NORMS": "norm", "POSITIONS": "position", "MLPS": "mlp",
    "ATTENTION_IMPLS": "attention",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'llmfs.model' has no attribute {name!r}")
    return getattr(importlib.import_module(f"llmfs.model.{_WHERE[name]}"), name)
