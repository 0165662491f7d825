"""Strict recipe loading: every error kind names the file, the dotted key, what was expected and a fix."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from llmfs.config import dump_toml, from_dict, invalid, load_recipe, option, parse_override
from llmfs.errors import ConfigError
from llmfs.metrics import LogConfig
from llmfs.runtime import RunConfig


@dataclasses.dataclass(frozen=True)
class OptimSection:
    lr: float = option(3e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = option(0.1, ge=0)
    name: Literal["adamw", "adamw_scratch"] = "adamw"


@dataclasses.dataclass(frozen=True)
class ModelSection:
    d_model: int = option(ge=1)
    n_heads: int = option(4, ge=1)
    norm: Literal["layernorm", "rmsnorm"] = "rmsnorm"
    window: int | None = None
    layers_per_stage: tuple[int, ...] = ()

    def validate(self) -> None:
        if self.d_model % self.n_heads:
            raise invalid("n_heads", f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")


@dataclasses.dataclass(frozen=True)
class DataSection:
    sources: dict[str, float] = dataclasses.field(default_factory=lambda: {"builtin:stories": 1.0})
    seq_len: int = option(256, ge=8)


@dataclasses.dataclass(frozen=True)
class ToyRecipe:
    model: ModelSection
    run: RunConfig = RunConfig()
    optim: OptimSection = OptimSection()
    data: DataSection = DataSection()
    log: LogConfig = LogConfig()

    def validate(self) -> None:
        if self.model.window is not None and self.model.window > self.data.seq_len:
            raise invalid("model.window", f"{self.model.window} exceeds data.seq_len {self.data.seq_len}")


GOOD = """
[run]
name = "toy"
seed = 7

[model]
d_model = 64
n_heads = 4
norm = "layernorm"

[optim]
lr = 1e-3
betas = [0.9, 0.99]

[data]
sources = { "builtin:stories" = 0.7, "notes.txt" = 0.3 }
"""


def write(tmp_path, text, name="r.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def load_error(tmp_path, text, overrides=()):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_recipe(p, ToyRecipe, overrides)
    return str(e.value), p


def test_good_recipe_loads_with_types_and_defaults(tmp_path):
    r = load_recipe(write(tmp_path, GOOD), ToyRecipe)
    assert r.run == RunConfig(name="toy", seed=7)
    assert r.model == ModelSection(d_model=64, n_heads=4, norm="layernorm")
    assert r.optim.betas == (0.9, 0.99) and isinstance(r.optim.betas, tuple)
    assert r.optim.weight_decay == 0.1
    assert r.data.sources == {"builtin:stories": 0.7, "notes.txt": 0.3}
    assert r.log == LogConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.optim.lr = 1.0  # type: ignore[misc]


def test_unknown_key_names_file_dotted_key_and_closest(tmp_path):
    msg, p = load_error(tmp_path, GOOD.replace("lr = 1e-3", "lrr = 1e-3"))
    assert msg.startswith(f"{p}: unknown key 'optim.lrr'")
    assert "did you mean 'optim.lr'?" in msg and "valid: lr, betas, weight_decay, name" in msg


def test_unknown_section_suggests_closest(tmp_path):
    msg, p = load_error(tmp_path, GOOD + "\n[optm]\nlr = 1\n")
    assert msg.startswith(f"{p}: unknown section [optm]") and "did you mean '[optim]'?" in msg


def test_wrong_type_names_expected_and_got(tmp_path):
    msg, p = load_error(tmp_path, GOOD.replace("lr = 1e-3", 'lr = "fast"'))
    assert msg == f"{p}: optim.lr: expected a number, got string 'fast'"
    msg, _ = load_error(tmp_path, GOOD.replace("n_heads = 4", "n_heads = 4.0"))
    assert msg.endswith("model.n_heads: expected an integer, got number 4.0")
    msg, _ = load_error(tmp_path, GOOD.replace("seed = 7", "seed = true"))
    assert msg.endswith("run.seed: expected an integer, got boolean True")
    msg, _ = load_error(tmp_path, GOOD.replace("betas = [0.9, 0.99]", "betas = [0.9]"))
    assert "optim.betas: expected an array of 2 values (a number, a number), got 1 values" in msg
    msg, _ = load_error(tmp_path, GOOD.replace("betas = [0.9, 0.99]", 'betas = [0.9, "x"]'))
    assert "optim.betas[1]: expected a number, got string 'x'" in msg


def test_out_of_range_value(tmp_path):
    msg, p = load_error(tmp_path, GOOD.replace("lr = 1e-3", "lr = -1.0"))
    assert msg == f"{p}: optim.lr: must be > 0, got -1.0"
    msg, _ = load_error(tmp_path, GOOD.replace("lr = 1e-3", "lr = nan"))
    assert "optim.lr: must be > 0, got nan" in msg


def test_unknown_component_name_lists_allowed_and_closest(tmp_path):
    msg, p = load_error(tmp_path, GOOD.replace('norm = "layernorm"', 'norm = "rmsnrom"'))
    assert msg == f"{p}: model.norm: 'rmsnrom' is not one of 'layernorm', 'rmsnorm'; did you mean 'rmsnorm'?"


def test_missing_required_key(tmp_path):
    msg, p = load_error(tmp_path, GOOD.replace("d_model = 64\n", ""))
    assert msg == f"{p}: model.d_model: missing required key (an integer)"
    msg, p = load_error(tmp_path, "[run]\nname='x'\n")
    assert msg == f"{p}: model: missing required key (a table)"


def test_section_validate_and_recipe_validate_name_keys(tmp_path):
    msg, p = load_error(tmp_path, GOOD.replace("d_model = 64", "d_model = 66"))
    assert msg == f"{p}: model.n_heads: d_model 66 is not divisible by n_heads 4"
    msg, p = load_error(tmp_path, GOOD.replace("norm =", "window = 999\nnorm ="))
    assert msg == f"{p}: model.window: 999 exceeds data.seq_len 256"


def test_run_section_checks(tmp_path):
    msg, _ = load_error(tmp_path, GOOD.replace('name = "toy"', 'name = "a b"'))
    assert "run.name: 'a b' must be letters" in msg
    msg, _ = load_error(tmp_path, GOOD.replace('name = "toy"', 'device = "gpu"'))
    assert "run.device: 'gpu' is not one of 'auto', 'cpu', 'mps', 'cuda', 'cuda:N'" in msg


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml: recipe file not found"):
        load_recipe(tmp_path / "nope.toml", ToyRecipe)
    p = write(tmp_path, "[model\nd_model = 3")
    with pytest.raises(ConfigError, match=r"r.toml: invalid TOML: .*line 1"):
        load_recipe(p, ToyRecipe)


def test_overrides_are_toml_literals(tmp_path):
    p = write(tmp_path, GOOD)
    r = load_recipe(p, ToyRecipe, ["optim.betas=[0.8,0.9]", "optim.lr=3e-4", "run.name=my-run",
                                   "model.window=128", "run.deterministic=true", "data.sources={a=1}"])
    assert r.optim.betas == (0.8, 0.9) and r.optim.lr == 3e-4 and r.run.name == "my-run"
    assert r.model.window == 128 and r.run.deterministic is True and r.data.sources == {"a": 1.0}
    # a string field takes the raw text even when it parses as another TOML type
    assert load_recipe(p, ToyRecipe, ["run.name=1234"]).run.name == "1234"
    # later overrides win; overrides can create a section that the file lacks
    assert load_recipe(p, ToyRecipe, ["optim.lr=1", "optim.lr=2"]).optim.lr == 2.0
    assert load_recipe(p, ToyRecipe, ["log.every=5"]).log.every == 5


def test_override_errors_name_the_set(tmp_path):
    msg, _ = load_error(tmp_path, GOOD, ["optim.lr=-2"])
    assert msg == "--set optim.lr=-2: optim.lr: must be > 0, got -2.0"
    msg, _ = load_error(tmp_path, GOOD, ["optim.lrr=1"])
    assert msg.startswith("--set optim.lrr=1: unknown key 'optim.lrr'; did you mean 'optim.lr'?")
    msg, _ = load_error(tmp_path, GOOD, ["optim.lr.x=1"])
    assert msg == "--set optim.lr.x=1: 'optim.lr' is a value, not a table"
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("optim.lr")


def test_parse_override_values():
    assert parse_override("a.b=[0.9, 0.95]") == ("a.b", [0.9, 0.95])
    assert parse_override("a=1_000") == ("a", 1000)
    assert parse_override('a="x y"') == ("a", "x y")
    assert parse_override("a=x y") == ("a", "x y")
    assert parse_override("a=false") == ("a", False)


def test_toml_round_trip(tmp_path):
    r = load_recipe(write(tmp_path, GOOD), ToyRecipe, ["model.layers_per_stage=[1,2]", "run.name=a.b-c"])
    text = dump_toml(r)
    again = load_recipe(write(tmp_path, text, "dumped.toml"), ToyRecipe)
    assert again == r
    assert dump_toml(again) == text


@dataclasses.dataclass(frozen=True)
class S:
    text: str = ""
    x: float = 0.0
    table: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class R:
    s: S = S()


def test_round_trip_awkward_strings_and_floats():
    obj = R(S(text='quote " back\\ tab\t nl\n del\x7f emoji 🦙 é', x=float("inf"), table={"a.b c": 1e-12}))
    assert from_dict(R, __import__("tomllib").loads(dump_toml(obj))) == obj


def test_from_dict_on_parsed_json_section():
    m = from_dict(ModelSection, {"d_model": 8, "n_heads": 2}, source="ckpt/config.json")
    assert m == ModelSection(d_model=8, n_heads=2)
    with pytest.raises(ConfigError, match=r"^ckpt/config.json: n_heads: must be >= 1, got 0$"):
        from_dict(ModelSection, {"d_model": 8, "n_heads": 0}, source="ckpt/config.json")


def test_a_section_given_in_part_starts_from_the_recipes_own_default(tmp_path):
    @dataclasses.dataclass(frozen=True)
    class StageRecipe:
        log: LogConfig = LogConfig(every=1, console="plain")
        optim: OptimSection = OptimSection(lr=1e-5)

    r = load_recipe(write(tmp_path, '[log]\nconsole = "none"\n'), StageRecipe)
    assert r.log == LogConfig(every=1, console="none")  # every from the recipe's default, not LogConfig's 10
    assert r.optim == OptimSection(lr=1e-5)
    r = load_recipe(write(tmp_path, "[optim]\nweight_decay = 0.0\n"), StageRecipe, ["optim.lr=2e-5"])
    assert r.optim == OptimSection(lr=2e-5, weight_decay=0.0)
