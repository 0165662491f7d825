"""Learning-rate schedules: pure functions of the step, chosen by name in `[schedule]`.

Every schedule is a multiplier in [0, 1] of `optim.lr` and starts with a linear warmup from 0: step `s` of a
warmup of `W` steps uses `(s + 1) / W` (so the first update is not wasted at lr 0, as in nanoGPT). After warmup:

- `cosine`: half a cosine from 1 down to `min_lr_ratio` at the last step (Loshchilov & Hutter 2017).
- `linear`: a straight line from 1 down to `min_lr_ratio` at the last step.
- `wsd`: warmup-stable-decay (Hu et al. 2024, MiniCPM): constant 1 until the last `decay_fraction` of the run,
  then linear down to `min_lr_ratio`. A run can be extended from a stable-phase checkpoint.
- `constant`: 1 after warmup.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Literal

from llmfs.config import invalid, option

ScheduleName = Literal["cosine", "linear", "wsd", "constant"]


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """The `[schedule]` section."""

    name: ScheduleName = "cosine"
    warmup_steps: int = option(100, ge=0)
    min_lr_ratio: float = option(0.1, ge=0, le=1, doc="final lr as a fraction of optim.lr")
    decay_fraction: float = option(0.2, gt=0, le=1, doc="wsd: fraction of the run spent decaying")


def _progress(step: int, warmup: int, total: int) -> float:
    """Fraction of the post-warmup phase done at `step`, in [0, 1]."""
    span = max(1, total - 1 - warmup)
    return min(1.0, max(0.0, (step - warmup) / span))


def cosine(step: int, total: int, cfg: ScheduleConfig) -> float:
    p = _progress(step, cfg.warmup_steps, total)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))


def linear(step: int, total: int, cfg: ScheduleConfig) -> float:
    p = _progress(step, cfg.warmup_steps, total)
    return 1 - (1 - cfg.min_lr_ratio) * p


def wsd(step: int, total: int, cfg: ScheduleConfig) -> float:
    decay_steps = max(1, round(cfg.decay_fraction * total))
    decay_start = total - decay_steps
    if step < decay_start:
        return 1.0
    p = min(1.0, (step - decay_start + 1) / decay_steps)
    return 1 - (1 - cfg.min_lr_ratio) * p


def constant(step: int, total: int, cfg: ScheduleConfig) -> float:
    return 1.0


SCHEDULES: dict[str, Callable[[int, int, ScheduleConfig], float]] = {
    "cosine": cosine, "linear": linear, "wsd": wsd, "constant": constant}


def lr_at(step: int, base_lr: float, total_steps: int, cfg: ScheduleConfig) -> float:
    """The learning rate of optimizer step `step` (0-based) in a run of `total_steps` steps."""
    if step < cfg.warmup_steps:
        return base_lr * (step + 1) / cfg.warmup_steps
    return base_lr * SCHEDULES[cfg.name](step, total_steps, cfg)


def check_fits(cfg: ScheduleConfig, total_steps: int, key: str = "schedule.warmup_steps") -> None:
    """A warmup (or wsd decay) longer than the run is a recipe mistake: raise naming the key."""
    if cfg.warmup_steps >= total_steps:
        raise invalid(key, f"warmup of {cfg.warmup_steps} steps does not fit in a run of {total_steps} steps")
    if cfg.name == "wsd" and cfg.warmup_steps + round(cfg.decay_fraction * total_steps) > total_steps:
        raise invalid("schedule.decay_fraction", f"warmup {cfg.warmup_steps} + decay of {cfg.decay_fraction} "
                                                 f"of {total_steps} steps exceeds the run")
