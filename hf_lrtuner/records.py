"""The tuner's records: what every race and every roll-back decided, as plain dicts with fixed keys.

`LRTuner.records` (so `scheduler.tuner.records`) is a list of these, in the order they happened. They hold only plain
Python types, so they go into `json.dump` and into checkpoints loaded with `torch.load(weights_only=True)`. A
multiplier is always a multiple of the initial LR (`LRTunerConfig.min_multiplier` to `max_multiplier`); the LR of an
update is the initial LR times its LR factor, the multiplier times the schedule's shape at that update
(`LRTuner.lr_factor_at`).

Records written by hf_lrtuner 0.2 named the multipliers `levels` and the outcome `choice`; `load_record` and
`load_records` read both. Records of 0.1 (tuning points with probe scores) have no equivalent and are refused.
"""

from typing import Iterable, List, Mapping, NotRequired, TypedDict, Union


class RaceRecord(TypedDict):
    """One race: the incumbent multiplier against one or two challengers, replayed on the same batches.

    Arms may race for different numbers of updates (a downward challenger is judged earlier, a challenger may be
    stopped), so their `scores` are comparable only between arms of equal `updates`; `differences` pair each arm with the
    incumbent over the same updates, and are what a race decides on.

    Keys:
        step (`int`): update the race started at (its snapshot; challengers replay from here).
        end_step (`int`): update it was decided at.
        incumbent (`float`): the multiplier the run trained at over the race.
        multipliers (`List[float]`): the arms, the incumbent first.
        horizons (`List[int]`): updates each arm was planned to race for, also for an arm that was stopped or never
            ran (the incumbent's: until the race was decided).
        updates (`List[int]`): updates each arm did race for: its horizon, fewer for a challenger stopped early
            (diverged, or behind the incumbent), 0 for one the race did not need. Records of 0.3 and earlier lack it.
        scores (`List[float]`): each arm's mean training loss over the second half of the updates it raced (NaN: never
            ran).
        differences (`List[List[float]]`): per arm, mean and standard error of its paired loss difference to the
            incumbent over the second half of the updates it raced (NaN: never ran).
        diverged (`List[bool]`): per arm, whether it diverged and was stopped before its horizon (an arm stopped
            because it was behind has `updates` below its horizon, not diverged).
        multiplier (`float`): the multiplier the race left (the incumbent's when it won).
        trial_updates (`int`): challenger updates of the run so far, this race's included.
    """

    step: int
    end_step: int
    incumbent: float
    multipliers: List[float]
    horizons: NotRequired[List[int]]  # records of early 0.2 development runs lack it
    updates: NotRequired[List[int]]  # records of 0.3 and earlier lack it
    scores: List[float]
    differences: List[List[float]]
    diverged: List[bool]
    multiplier: float
    trial_updates: int


class RollbackRecord(TypedDict):
    """A roll-back after a divergence, or after training stalled on its probation following an earlier roll-back:
    training went back to the last safe point and the multiplier was lowered.

    Keys:
        step (`int`): update at which the divergence was seen.
        rollback_to (`int`): update of the safe point training returned to.
        multiplier (`float`): the lowered multiplier training continued at.
    """

    step: int
    rollback_to: int
    multiplier: float


TuningRecord = Union[RaceRecord, RollbackRecord]

_NAMES_OF_0_2 = {"levels": "multipliers", "choice": "multiplier"}  # 0.2 name -> current name


def is_race(record: Mapping) -> bool:
    """Whether `record` (current or 0.2 keys) is a race; otherwise it is a roll-back."""
    return "multipliers" in record or "levels" in record


def load_record(record: Mapping) -> TuningRecord:
    """A record with the current keys, from one saved by this version or by hf_lrtuner 0.2.

    Values are kept as they are (`scripts/run_squad.py` writes non-finite numbers as strings such as `"nan"`).

    Args:
        record (`Mapping`): a race or roll-back record, e.g. one element of a saved `records` list.

    Returns:
        [`RaceRecord`] or [`RollbackRecord`]: a new dict.

    Raises:
        `ValueError`: the record is neither a race nor a roll-back (e.g. a tuning point of hf_lrtuner 0.1).
    """
    loaded = {_NAMES_OF_0_2.get(key, key): value for key, value in record.items()}
    keys = (RaceRecord if is_race(record) else RollbackRecord).__required_keys__
    if not keys <= loaded.keys():
        raise ValueError(
            f"Record at step {record.get('step')!r} is neither a race nor a roll-back (keys {sorted(record)}). "
            "Records of hf_lrtuner 0.1 (tuning points with probe scores) have no equivalent in races."
        )
    return loaded


def load_records(records: Iterable[Mapping]) -> List[TuningRecord]:
    """`load_record` of every record, in order. See [`load_record`]."""
    return [load_record(record) for record in records]
