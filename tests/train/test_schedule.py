"""LR schedules: hand-computed values at chosen steps, and a clear error when the schedule outgrows the run."""

from __future__ import annotations

import math

import pytest

from llmfs.config import InvalidValue
from llmfs.train.schedule import SCHEDULES, ScheduleConfig, check_fits, lr_at


def test_names_match_literal():
    from typing import get_args

    from llmfs.train.schedule import ScheduleName

    assert set(get_args(ScheduleName)) == set(SCHEDULES)


def test_warmup_is_linear_from_first_step():
    cfg = ScheduleConfig(name="constant", warmup_steps=4)
    assert [lr_at(s, 1.0, 100, cfg) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_hand_computed():
    cfg = ScheduleConfig(name="cosine", warmup_steps=10, min_lr_ratio=0.1)
    # total 111: post-warmup span = 111 - 1 - 10 = 100 steps; step 60 is halfway -> cos(pi/2) = 0
    assert lr_at(10, 2.0, 111, cfg) == pytest.approx(2.0)
    assert lr_at(60, 2.0, 111, cfg) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))
    assert lr_at(35, 2.0, 111, cfg) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4))))
    assert lr_at(110, 2.0, 111, cfg) == pytest.approx(0.2)


def test_linear_hand_computed():
    cfg = ScheduleConfig(name="linear", warmup_steps=0, min_lr_ratio=0.0)
    assert [lr_at(s, 1.0, 5, cfg) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_wsd_hand_computed():
    cfg = ScheduleConfig(name="wsd", warmup_steps=2, min_lr_ratio=0.0, decay_fraction=0.4)
    # total 10: decay over the last 4 steps (6..9): 1 - p with p = 1/4, 2/4, 3/4, 4/4
    assert [lr_at(s, 1.0, 10, cfg) for s in range(10)] == [0.5, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25, 0.0]


def test_schedule_longer_than_run_is_an_error():
    with pytest.raises(InvalidValue, match="warmup of 100 steps does not fit in a run of 50 steps"):
        check_fits(ScheduleConfig(warmup_steps=100), 50)
    with pytest.raises(InvalidValue, match="decay_fraction"):
        check_fits(ScheduleConfig(name="wsd", warmup_steps=60, decay_fraction=0.5), 100)
    check_fits(ScheduleConfig(warmup_steps=10), 50)
