"""Canary rules without a database: the arm of an execution, stage statistics, the decision."""

from __future__ import annotations

import pytest

from chief.core.canary import (
    ArmStats,
    Canary,
    CanaryError,
    Thresholds,
    arm_of,
    arm_stats,
    decide,
    parse_model,
    parse_stages,
    stage_stats,
)
from chief.core.messages import new_id


def canary(stage_index: int = 0, **thresholds) -> Canary:
    return Canary(id="c0ffee000001", kind="workflow", subject="w", stable="s", candidate="c",
                  stages=[10, 25, 50, 100], stage_index=stage_index, status="running",
                  thresholds=Thresholds(**{"min_runs": 10, **thresholds}))


@pytest.mark.parametrize("share", [10, 25, 50])
def test_canary_arm_share_is_respected_statistically(share):
    ids = [new_id() for _ in range(20_000)]
    taken = sum(arm_of("c0ffee000001", i, share) == "candidate" for i in ids) / len(ids)
    # binomial, n = 20000: 5 standard deviations is at most 1.8 points
    assert taken == pytest.approx(share / 100, abs=0.018)


def test_canary_arm_is_deterministic_and_never_moves_back_as_the_share_grows():
    ids = [new_id() for _ in range(2000)]
    for i in ids:
        assert arm_of("c1", i, 25) == arm_of("c1", i, 25)
    at = {share: {i for i in ids if arm_of("c1", i, share) == "candidate"} for share in (0, 10, 25, 50, 100)}
    assert at[0] == set() and at[100] == set(ids)
    assert at[10] <= at[25] <= at[50]
    # another canary splits the same executions differently
    assert {i for i in ids if arm_of("c2", i, 50) == "candidate"} != at[50]


def test_canary_arm_stats_count_failures_and_the_median_of_successes():
    stats = arm_stats([(True, 10.0), (True, 30.0), (False, 999.0), (True, 20.0)])
    assert (stats.runs, stats.failed, stats.p50_ms, stats.error_rate) == (4, 1, 20.0, 0.25)
    assert arm_stats([]) == ArmStats(0, 0, None)


def test_canary_waits_for_min_runs_then_promotes_stage_by_stage():
    stable = ArmStats(40, 0, 50.0)
    assert decide(canary(), stable, ArmStats(9, 0, 50.0)).action == "hold"
    got = decide(canary(), stable, ArmStats(10, 0, 55.0))
    assert (got.action, got.stage_index) == ("promote", 1)
    assert "held at 10%" in got.reason
    last = decide(canary(stage_index=3), stable, ArmStats(10, 0, 50.0))
    assert (last.action, last.stage_index) == ("promote", None)  # from 100%: promoted for good


def test_canary_rolls_back_on_errors_as_soon_as_they_are_certain():
    stable = ArmStats(40, 0, 50.0)
    # 0% stable + 5 points allowed: at 10 runs that is 0.5 failures, so the first failure decides
    assert decide(canary(), stable, ArmStats(1, 1, None)).action == "rollback"  # 1 > 0.05 * 10
    loose = canary(max_error_increase=0.2)  # 2 failures allowed in 10 runs
    assert decide(loose, stable, ArmStats(3, 2, 50.0)).action == "hold"
    got = decide(loose, stable, ArmStats(4, 3, 50.0))
    assert got.action == "rollback" and "failed 3 of 4 runs" in got.reason
    # a stable arm that fails too raises the bar
    assert decide(loose, ArmStats(10, 5, 50.0), ArmStats(10, 6, 50.0)).action == "promote"


def test_canary_rolls_back_when_latency_does_not_hold():
    stable = ArmStats(40, 0, 400.0)
    got = decide(canary(), stable, ArmStats(10, 0, 700.0))
    assert got.action == "rollback" and "p50 700 ms" in got.reason
    assert decide(canary(), stable, ArmStats(10, 0, 590.0)).action == "promote"  # under 1.5x
    # small absolute differences are noise, whatever the ratio
    assert decide(canary(), ArmStats(40, 0, 2.0), ArmStats(10, 0, 9.0)).action == "promote"


def test_canary_stage_stats_fall_back_to_every_stable_run():
    c = canary(stage_index=3, min_runs=2)
    runs = [(0, "stable", True, 10.0), (0, "stable", False, None), (1, "stable", True, 30.0),
            (3, "candidate", True, 12.0), (2, "candidate", False, None)]
    stable, candidate = stage_stats(c, runs)
    assert (stable.runs, stable.failed) == (3, 1)  # none at 100%: the whole canary's
    assert (candidate.runs, candidate.failed) == (1, 0)  # only this stage's


@pytest.mark.parametrize("text, problem", [
    ("10,5,100", "larger than the one before"), ("10,50", "last stage must be 100"), ("0,100", "between 1 and 100"),
    ("ten", "percentages separated by commas"),
])
def test_canary_stages_are_checked(text, problem):
    with pytest.raises(CanaryError, match=problem):
        parse_stages(text)
    assert parse_stages("5, 50,100") == [5, 50, 100]


def test_canary_thresholds_and_models_are_checked():
    with pytest.raises(CanaryError, match="min runs"):
        Thresholds(min_runs=0)
    with pytest.raises(CanaryError, match="latency ratio"):
        Thresholds(max_latency_ratio=0.5)
    assert parse_model("openai:gpt-4o-mini") == ("openai", "gpt-4o-mini")
    assert parse_model("llm:echo:v2") == ("llm", "echo:v2")
    assert parse_model("offline") == ("offline", None)
    with pytest.raises(CanaryError, match="provider:model"):
        parse_model(":x")
