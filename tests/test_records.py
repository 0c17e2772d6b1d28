"""The typed records and the one name for "times the initial LR": what 0.2 saved still loads."""

import json
from pathlib import Path

import pytest
import torch

from hf_lrtuner import LRTunerConfig, LRTunerScheduler, RaceRecord, RollbackRecord, load_records
from hf_lrtuner.records import is_race, load_record
from hf_lrtuner.tuner import RULE_OF_0_3

REPO = Path(__file__).resolve().parent.parent
# Written by hf_lrtuner 0.2 (commit 84de001): a plain TrialRunner run of a linear regression, saved inside its third
# race, after a roll-back; the tuner then called the multiplier "level" and a record's outcome "choice".
STATE_V02 = Path(__file__).resolve().parent / "data" / "scheduler_state_v0.2.json"


def test_a_scheduler_state_saved_by_0_2_loads_and_continues_its_race():
    saved = json.loads(STATE_V02.read_text())
    optimizer = torch.optim.SGD(torch.nn.Linear(8, 1).parameters(), lr=0.02)
    scheduler = LRTunerScheduler(optimizer, 100, LRTunerConfig(**saved["config"]))  # a resume keeps the run's config
    scheduler.load_state_dict(saved)
    tuner = scheduler.tuner
    assert tuner.multiplier == saved["tuner"]["level"] == 2.0
    assert tuner.racing and tuner.race_start == 28 and tuner.rollbacks == 1
    assert optimizer.param_groups[0]["lr"] == pytest.approx(saved["_last_lr"][0])
    kinds = ["race" if is_race(record) else "rollback" for record in tuner.records]
    assert kinds == ["race", "race", "rollback"]
    for old, new in zip(saved["tuner"]["records"], tuner.records):
        assert new["multiplier"] == old["choice"] and "choice" not in new and "levels" not in new
        assert new.get("multipliers") == old.get("levels")
    state = tuner.state_dict()
    assert state["multiplier"] == 2.0 and "level" not in state
    assert [r["step"] for r in state["records"]] == [r["step"] for r in saved["tuner"]["records"]]


@pytest.mark.parametrize("rule", [{}, RULE_OF_0_3])
def test_a_state_of_0_2_continues_with_0_3s_rule_whatever_the_rule_settings_of_the_resuming_scheduler(rule):
    """The rule's settings did not exist before 0.4: the saved state dictates them; any other setting must match."""
    saved = json.loads(STATE_V02.read_text())
    optimizer = torch.optim.SGD(torch.nn.Linear(8, 1).parameters(), lr=0.02)
    scheduler = LRTunerScheduler(optimizer, 100, LRTunerConfig(**{**saved["config"], **rule}))
    scheduler.load_state_dict(saved)
    config = scheduler.tuner.config
    assert (config.accelerate, config.improvement_of, config.stop_behind) == (False, "loss", False)
    assert config.race_horizon == saved["config"]["race_horizon"] == 10  # its own horizon, as it ran
    other = LRTunerScheduler(optimizer, 100, LRTunerConfig(**{**saved["config"], **rule, "max_races": 9}))
    with pytest.raises(ValueError, match="max_races"):
        other.load_state_dict(saved)


def test_the_demo_records_committed_by_0_2_load_with_the_current_keys():
    runs = json.loads((REPO / "docs" / "results" / "demo_records.json").read_text())
    for saved in runs.values():
        loaded = load_records(saved)
        # every key but `updates`, which records of 0.3 and earlier lack
        assert [set(record) for record in loaded] == [set(RaceRecord.__annotations__) - {"updates"}] * len(saved)
        assert [record["multipliers"] for record in loaded] == [record["levels"] for record in saved]
        assert [record["multiplier"] for record in loaded] == [record["choice"] for record in saved]


def test_the_tuner_writes_records_with_exactly_the_documented_keys():
    tuner = LRTunerScheduler(torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1), 100,
                             LRTunerConfig(race_horizon=10, down_horizon=5)).tuner
    tuner.start_race(0)
    for multiplier in tuner.challengers_due(5):
        tuner.score_challenger(multiplier, [1.0] * 5, [1.0] * 10)
    race = tuner.finish_race(10, [1.0] * 10)
    rollback = tuner.back_off(12)
    assert set(race) == set(RaceRecord.__annotations__) and set(rollback) == set(RollbackRecord.__annotations__)
    assert load_records(tuner.records) == tuner.records
    assert json.dumps(load_records(json.loads(json.dumps(tuner.records)))) == json.dumps(tuner.records)


def test_a_record_of_0_1_is_refused_with_a_reason():
    runs = json.loads((REPO / "docs" / "results" / "lrtuner_records.json").read_text())
    tuning_point = next(iter(runs.values()))[0]
    with pytest.raises(ValueError, match="hf_lrtuner 0.1"):
        load_record(tuning_point)
