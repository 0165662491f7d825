"""Every file under recipes/ loads into its recipe class (a new recipe must be added here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmfs.config import dump_toml, load_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def recipe_class(name: str):
    from llmfs.data.clean.config import CleanRecipe
    from llmfs.train.pretrain import PretrainRecipe
    from llmfs.train.grpo import GRPORecipe
    from llmfs.train.ppo import PPORecipe
    from llmfs.train.reward import RewardRecipe
    from llmfs.train.sft import SFTRecipe

    return {"small": PretrainRecipe, "classic": PretrainRecipe, "shakespeare_char": PretrainRecipe,
            "sft": SFTRecipe, "reward": RewardRecipe, "grpo": GRPORecipe, "ppo": PPORecipe, "clean": CleanRecipe}[name]


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.toml")), ids=lambda p: p.name)
def test_recipe_loads_and_round_trips(path, tmp_path):
    r = load_recipe(path, recipe_class(path.stem))
    again = tmp_path / path.name
    again.write_text(dump_toml(r))
    assert load_recipe(again, recipe_class(path.stem)) == r


def test_recipes_directory_is_not_empty():
    assert {p.stem for p in RECIPES.glob("*.toml")} >= {"small", "classic", "sft", "reward", "grpo", "ppo"}


def test_sft_recipe_starts_from_the_small_run_and_fits_its_context():
    small = load_recipe(RECIPES / "small.toml", recipe_class("small"))
    sft = load_recipe(RECIPES / "sft.toml", recipe_class("sft"))
    assert sft.init_from == f"{small.run.out_dir}/{small.run.name}"
    assert sft.data.seq_len <= small.model.max_seq_len


def test_reward_recipe_starts_from_the_sft_run_and_fits_its_context():
    small = load_recipe(RECIPES / "small.toml", recipe_class("small"))
    sft = load_recipe(RECIPES / "sft.toml", recipe_class("sft"))
    reward = load_recipe(RECIPES / "reward.toml", recipe_class("reward"))
    assert reward.init_from == f"{sft.run.out_dir}/{sft.run.name}"
    assert reward.data.seq_len <= small.model.max_seq_len


def test_small_and_classic_differ_only_in_architecture():
    small = load_recipe(RECIPES / "small.toml", recipe_class("small"))
    classic = load_recipe(RECIPES / "classic.toml", recipe_class("classic"))
    assert small.data == classic.data and small.optim == classic.optim and small.schedule == classic.schedule
    assert (classic.model.position, classic.model.norm, classic.model.mlp) == ("learned", "layernorm", "gelu")
    assert (small.model.position, small.model.norm, small.model.mlp) == ("rope", "rmsnorm", "swiglu")


def test_grpo_recipe_starts_from_the_sft_run():
    sft = load_recipe(RECIPES / "sft.toml", recipe_class("sft"))
    grpo = load_recipe(RECIPES / "grpo.toml", recipe_class("grpo"))
    assert grpo.init_from == f"{sft.run.out_dir}/{sft.run.name}"


def test_reward_recipe_refuses_fsdp_until_it_is_wired():
    from llmfs.errors import ConfigError

    with pytest.raises(ConfigError, match="train.parallel: fsdp is not wired for the reward model"):
        load_recipe(RECIPES / "reward.toml", recipe_class("reward"), ['train.parallel="fsdp"'])
