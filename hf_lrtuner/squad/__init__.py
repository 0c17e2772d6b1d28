"""SQuAD v1.1 extractive question answering with the Hugging Face Trainer (needs `pip install hf_lrtuner[squad]`).

Split like transformers' question-answering example (`run_qa.py`, `utils_qa.py`, `trainer_qa.py`):

- `data`: official SQuAD v1.1 JSON files as datasets with the `load_dataset("squad")` schema, split by article;
- `features`: tokenization into training and evaluation features;
- `postprocess`: logits back to answer texts;
- `trainer`: `QuestionAnsweringTrainer`, whose `evaluate()` reports exact match and F1;
- `metrics`: SQuAD v1.1 exact match and F1.

`import hf_lrtuner` does not import this subpackage, nor `datasets` or `evaluate`.
"""

try:
    import datasets  # noqa: F401
except ImportError as error:
    raise ImportError(
        "hf_lrtuner.squad needs the `datasets` library, which hf_lrtuner's core does not install. Install the SQuAD "
        "extra: pip install 'hf_lrtuner[squad]'"
    ) from error

from .data import (
    SQUAD_FEATURES,
    SquadFormatError,
    load_squad_json,
    read_squad_json,
    split_by_article,
    squad_json_to_dataset,
)
from .features import (
    build_train_features,
    build_validation_features,
    prepare_train_features,
    prepare_validation_features,
)
from .metrics import (
    compute_squad_v1,
    exact_match_score,
    f1_score,
    load_evaluate_squad_metric,
    normalize_answer,
    squad_metrics,
)
from .postprocess import postprocess_qa_predictions
from .trainer import QuestionAnsweringTrainer


__all__ = [
    "SQUAD_FEATURES",
    "QuestionAnsweringTrainer",
    "SquadFormatError",
    "build_train_features",
    "build_validation_features",
    "compute_squad_v1",
    "exact_match_score",
    "f1_score",
    "load_evaluate_squad_metric",
    "load_squad_json",
    "normalize_answer",
    "postprocess_qa_predictions",
    "prepare_train_features",
    "prepare_validation_features",
    "read_squad_json",
    "split_by_article",
    "squad_json_to_dataset",
    "squad_metrics",
]
