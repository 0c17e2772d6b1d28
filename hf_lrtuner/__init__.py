"""LRTuner for PyTorch and the Hugging Face Trainer: tune the learning rate while training runs.

What users build: `LRTunerTrainer` (or `LRTunerTrainerMixin` on a Trainer subclass, or `LRTunerCallback`) with an
`LRTunerConfig`; in a plain PyTorch loop, `LRTunerScheduler` and `TrialRunner`. The tuner's decisions are typed
records (`RaceRecord`, `RollbackRecord`, `load_records`). The internals stay importable from their modules
(`hf_lrtuner.tuner.LRTuner`, `hf_lrtuner.tuner.LossMonitor`, `hf_lrtuner.snapshot.TrainingSnapshot`).

The plain-PyTorch part does not import `transformers`; the Trainer integration is imported on first use. SQuAD v1.1
question answering is the optional subpackage `hf_lrtuner.squad` (`pip install hf_lrtuner[squad]`), which
`import hf_lrtuner` does not load.
"""

from .config import LRTunerConfig
from .records import RaceRecord, RollbackRecord, TuningRecord, load_records
from .scheduler import LRTunerScheduler
from .trials import TrialRunner

__version__ = "0.4.0.dev0"

_TRAINER_EXPORTS = {"LRTunerCallback": "callback", "LRTunerTrainerMixin": "callback", "LRTunerTrainer": "callback"}
# Top-level names of earlier releases that 0.4 keeps in their modules only
_MOVED = {"LRTuner": "tuner", "LossMonitor": "tuner", "TrainingSnapshot": "snapshot"}

__all__ = [
    "LRTunerConfig", "LRTunerScheduler", "RaceRecord", "RollbackRecord", "TrialRunner", "TuningRecord", "load_records",
    *_TRAINER_EXPORTS
]


def __getattr__(name):
    if name in _TRAINER_EXPORTS:
        import importlib

        module = importlib.import_module(f".{_TRAINER_EXPORTS[name]}", __name__)
        return getattr(module, name)
    if name in _MOVED:
        raise AttributeError(
            f"hf_lrtuner.{name} is an internal of the tuner, no longer exported at the top level since 0.4: "
            f"from hf_lrtuner.{_MOVED[name]} import {name} (CHANGELOG.md lists every change)."
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
