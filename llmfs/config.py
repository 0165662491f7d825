"""Recipes: TOML files -> frozen dataclasses, strictly.

A recipe is a frozen dataclass whose fields are sections (`[run]`, `[model]`, `[optim]`, ...); each section is a
frozen dataclass owned by the module that consumes it. `load_recipe(path, RecipeClass, overrides)` reads the TOML
file, applies `--set a.b=value` overrides (values parsed as TOML literals), converts every value to its declared
type and checks it. Any mistake raises `ConfigError` naming the file (or the `--set` that caused it), the dotted
key, what was expected and the closest valid key or name.

Supported field types: bool, int, float (ints accepted), str, `Literal[...]` (component names), `X | None`
(None only as a default: TOML has no null), `tuple[X, ...]` and fixed `tuple[X, Y]`, `dict[str, X]`, and nested
dataclasses (TOML tables). Numeric bounds are declared with `option(default, gt=0, le=1)`; cross-field rules
live in a section's `validate()` method, which raises `invalid("key", "why")` with a key relative to the section.

This module imports no torch, so a recipe is checked before any heavy import.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from llmfs.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

T = TypeVar("T")

_BOUNDS = {"gt": (lambda v, b: v > b, ">"), "ge": (lambda v, b: v >= b, ">="),
           "lt": (lambda v, b: v < b, "<"), "le": (lambda v, b: v <= b, "<=")}


def option(default: Any = dataclasses.MISSING, *, gt: float | None = None, ge: float | None = None,
           lt: float | None = None, le: float | None = None, doc: str = "") -> Any:
    """A dataclass field with numeric bounds (checked at load) and a one-line description."""
    bounds = {k: v for k, v in (("gt", gt), ("ge", ge), ("lt", lt), ("le", le)) if v is not None}
    return dataclasses.field(default=default, metadata={"bounds": bounds, "doc": doc})


class InvalidValue(ConfigError):
    """Raised by a section's `validate()`; the loader adds the file and the section prefix."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


def invalid(key: str, message: str) -> InvalidValue:
    """Build the error a `validate()` method raises: `raise invalid("window", "must be <= max_seq_len")`."""
    return InvalidValue(key, message)


# ----------------------------------------------------------------------------------------------- sources
@dataclasses.dataclass(frozen=True)
class Source:
    """Where values came from: a file, plus the raw text of each `--set` override (dotted key -> text)."""

    file: str
    overrides: dict[str, str] = dataclasses.field(default_factory=dict)

    def override_for(self, key: str) -> str | None:
        """The `--set` that set `key` or one of its parent tables, if any."""
        parts = key.split(".")
        for i in range(len(parts), 0, -1):
            k = ".".join(parts[:i])
            if k in self.overrides:
                return k
        return None

    def where(self, key: str) -> str:
        k = self.override_for(key)
        return f"--set {k}={self.overrides[k]}" if k is not None else self.file

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.where(key)}: {key}: {message}" if key else f"{self.file}: {message}")


# ------------------------------------------------------------------------------------------- conversion
def _closest(name: str, options: typing.Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else ""


def _describe(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"an array of {_describe(args[0])}"
        return f"an array of {len(args)} values ({', '.join(_describe(a) for a in args)})"
    if origin is dict:
        return f"a table of {_describe(args[1])}"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _shown(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            tuple: "array", dict: "table"}.get(type(value), type(value).__name__)
    return f"{kind} {value!r}" if not isinstance(value, dict) else "a table"


def _convert(value: Any, tp: Any, key: str, src: Source) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise src.error(key, f"expected a table [{key}], got {_shown(value)}")
        return _from_dict(tp, value, key, src)
    if origin is Literal:
        if value in args and type(value) is type(args[0]):
            return value
        names = [str(a) for a in args]
        hint = _closest(str(value), names) if isinstance(value, str) else ""
        raise src.error(key, f"{value!r} is not one of {', '.join(repr(a) for a in args)}{hint}")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key, src)
            except ConfigError as e:
                errors.append(e)
        if len(errors) == 1:
            raise errors[0]
        raise src.error(key, f"expected {_describe(tp)}, got {_shown(value)}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise src.error(key, f"expected {_describe(tp)}, got {_shown(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]", src) for i, v in enumerate(value))
        if len(value) != len(args):
            raise src.error(key, f"expected {_describe(tp)}, got {len(value)} values")
        return tuple(_convert(v, a, f"{key}[{i}]", src) for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise src.error(key, f"expected {_describe(tp)}, got {_shown(value)}")
        return {str(k): _convert(v, args[1], f"{key}.{k}", src) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
        k = src.override_for(key)
        if k == key:  # `--set run.name=true`: a string field takes the override's raw text
            return src.overrides[k]
    else:
        raise TypeError(f"config field {key} has unsupported type {tp!r}")  # a bug in a dataclass
    raise src.error(key, f"expected {_describe(tp)}, got {_shown(value)}")


def _check_bounds(value: Any, f: dataclasses.Field, key: str, src: Source) -> None:
    for name, bound in f.metadata.get("bounds", {}).items():
        ok, symbol = _BOUNDS[name]
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if isinstance(v, (int, float)) and not (ok(v, bound) and not (isinstance(v, float) and math.isnan(v))):
                raise src.error(key, f"must be {symbol} {bound}, got {v!r}")


def _from_dict(cls: type[T], data: dict[str, Any], prefix: str, src: Source) -> T:
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    dotted = (lambda k: f"{prefix}.{k}" if prefix else k)
    for k in data:
        if k not in fields:
            if not prefix and isinstance(data[k], dict):
                what, names = f"section [{k}]", [f"[{n}]" for n in fields]
                hint = _closest(f"[{k}]", names)
            else:
                what, names = f"key '{dotted(k)}'", list(fields)
                hint = _closest(k, fields).replace("'", "'" + (prefix + "." if prefix else ""), 1)
            raise ConfigError(f"{src.where(dotted(k))}: unknown {what}{hint} (valid: {', '.join(names)})")
    kwargs = {}
    for name, f in fields.items():
        key = dotted(name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise src.error(key, f"missing required key ({_describe(hints[name])})")
            continue
        value = data[name]
        if dataclasses.is_dataclass(f.default) and isinstance(value, dict):
            # a section given in part starts from the recipe's own default for it (GRPORecipe logs every step
            # even when its [log] section only sets console), not from the section class's defaults
            value = {**{g.name: getattr(f.default, g.name) for g in dataclasses.fields(f.default) if g.init},
                     **value}
        kwargs[name] = _convert(value, hints[name], key, src)
        _check_bounds(kwargs[name], f, key, src)
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except InvalidValue as e:
            raise src.error(dotted(e.key), e.message) from None
    return obj


def from_dict(cls: type[T], data: dict[str, Any], *, source: str = "<dict>",
              overrides: dict[str, str] | None = None) -> T:
    """Build `cls` from a plain dict (a parsed TOML document or a `config.json` section), strictly."""
    return _from_dict(cls, data, "", Source(source, dict(overrides or {})))


# -------------------------------------------------------------------------------------------- overrides
def parse_override(text: str) -> tuple[str, Any]:
    """`"optim.betas=[0.9,0.95]"` -> `("optim.betas", [0.9, 0.95])`. Values are TOML literals; anything that
    does not parse as one (`run.name=my-run`) is taken as a plain string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not re.fullmatch(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*", key):
        raise ConfigError(f"--set {text}: expected KEY=VALUE with a dotted key, e.g. --set optim.lr=3e-4")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def apply_overrides(data: dict[str, Any], overrides: typing.Sequence[str]) -> dict[str, str]:
    """Apply `--set` strings to `data` in place; return {dotted key: raw text} for error messages."""
    raw: dict[str, str] = {}
    for text in overrides:
        key, value = parse_override(text)
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text}: '{'.'.join(parts[:i + 1])}' is a value, not a table")
            node = child
        node[parts[-1]] = value
        raw[key] = text.partition("=")[2].strip()
    return raw


# ---------------------------------------------------------------------------------------------- loading
def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing file or a syntax error is a one-line ConfigError."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: recipe file not found" + (" (it is a directory)" if p.is_dir() else ""))
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a UTF-8 text file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: invalid TOML: {e}") from None


def load_recipe(path: str | Path, cls: type[T], overrides: typing.Sequence[str] = ()) -> T:
    """Read a recipe file, apply `--set` overrides and build `cls` strictly."""
    data = read_toml(path)
    raw = apply_overrides(data, overrides)
    return _from_dict(cls, data, "", Source(str(path), raw))


# ---------------------------------------------------------------------------------------------- dumping
def to_dict(obj: Any) -> Any:
    """A dataclass as plain TOML/JSON-able data: tuples become lists, None values are dropped."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if getattr(obj, f.name) is not None}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items() if v is not None}
    return obj


_BARE_KEY = re.compile(r"[A-Za-z0-9_\-]+")


def _toml_key(k: str) -> str:
    return k if _BARE_KEY.fullmatch(k) else _toml_string(k)


def _toml_string(s: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes; TOML also forbids a raw DEL character.
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _dump_table(data: dict[str, Any], path: list[str], out: list[str]) -> None:
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict) and not _is_table_array(v)}
    if path and (scalars or not data):
        out.append(f"\n[{'.'.join(_toml_key(p) for p in path)}]")
    out.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in scalars.items())
    for k, v in data.items():
        if isinstance(v, dict):
            _dump_table(v, path + [k], out)
        elif _is_table_array(v):
            for item in v:
                out.append(f"\n[[{'.'.join(_toml_key(p) for p in path + [k])}]]")
                out.extend(f"{_toml_key(ik)} = {_toml_value(iv)}" for ik, iv in item.items())


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def dump_toml(obj: Any) -> str:
    """A recipe (or any config dataclass / dict) as TOML text that loads back to an equal object."""
    data = to_dict(obj)
    out: list[str] = []
    _dump_table(data, [], out)
    return "\n".join(out).lstrip("\n") + "\n"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
