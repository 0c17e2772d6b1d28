"""LRTuner for PyTorch and the Hugging Face Trainer: tune the learning rate while training runs.

The algorithm core (`LRTunerConfig`, `LRTuner`, `LossMonitor`, `LRTunerScheduler`, `TrialRunner`) does not import
`transformers`; the Trainer integration is imported on first use. SQuAD v1.1 question answering is the optional
subpackage `hf_lrtuner.squad` (`pip install hf_lrtuner[squad]`), which `import hf_lrtuner` does not load.
"""

from .config import LRTunerConfig
from .records import RaceRecord, RollbackRecord, TuningRecord, load_records
from .scheduler import LRTunerScheduler
from .snapshot import TrainingSnapshot
from .trials import TrialRunner
from .tuner import LossMonitor, LRTuner

__version__ = "0.4.0.dev0"

_TRAINER_EXPORTS = {"LRTunerCallback": "callback", "LRTunerTrainerMixin": "callback", "LRTunerTrainer": "callback"}

__all__ = [
    "LossMonitor", "LRTuner", "LRTunerConfig", "LRTunerScheduler", "RaceRecord", "RollbackRecord", "TrainingSnapshot",
    "TrialRunner", "TuningRecord", "load_records", *_TRAINER_EXPORTS
]


def __getattr__(name):
    if name in _TRAINER_EXPORTS:
        import importlib

        module = importlib.import_module(f".{_TRAINER_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
