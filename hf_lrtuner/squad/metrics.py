"""SQuAD v1.1 exact match and F1.

`squad_metrics` uses the Hub metric `evaluate.load("squad")` when it can be loaded and otherwise this module's own
implementation of the official v1.1 evaluation script (`evaluate-v1.1.py`). The own implementation is kept because
`evaluate.load` fetches the metric's script from the Hub, so offline machines (this repository's CI, the offline
demo) cannot use it; `evaluate` (in the `[squad]` extra) is imported only when the Hub metric is tried. Both
implement the same rules: answers are lower-cased, punctuation and the articles a/an/the are removed and whitespace
is collapsed before comparing; exact match and token-level F1 take the best score over the gold answers.
"""

import logging
import os
import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

logger = logging.getLogger(__name__)

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}

# None: not tried yet; False: unavailable; otherwise the loaded `evaluate` metric.
_evaluate_squad_metric: Any = None


def normalize_answer(text: str) -> str:
    """Normalise an answer as the official SQuAD v1.1 script does.

    Args:
        text (`str`): A predicted or gold answer.

    Returns:
        `str`: The answer lower-cased, without punctuation and articles (a, an, the), with single spaces.
    """
    text = "".join(char for char in text.lower() if char not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match_score(prediction: str, ground_truth: str) -> bool:
    """Whether a prediction equals a gold answer after `normalize_answer`.

    Args:
        prediction (`str`): The predicted answer text.
        ground_truth (`str`): One gold answer text.

    Returns:
        `bool`: True when both normalise to the same string.
    """
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def f1_score(prediction: str, ground_truth: str) -> float:
    """Token-level F1 between a prediction and a gold answer, as in the official SQuAD v1.1 script.

    Args:
        prediction (`str`): The predicted answer text.
        ground_truth (`str`): One gold answer text.

    Returns:
        `float`: F1 in [0, 1] over the bags of normalised whitespace tokens; 0 when they share no token.
    """
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    num_same = sum((Counter(prediction_tokens) & Counter(ground_truth_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return 2 * precision * recall / (precision + recall)


def compute_squad_v1(predictions: Mapping[str, str], references: Mapping[str, list[str]]) -> dict[str, float]:
    """Exact match and F1 over a set of questions, following the official SQuAD v1.1 evaluation script.

    Every question in `references` counts; a question without a prediction scores 0 (the official script does the
    same and prints a warning). Predictions for ids that are not in `references` are ignored.

    Args:
        predictions (`Mapping[str, str]`): Question id -> predicted answer text.
        references (`Mapping[str, list[str]]`): Question id -> gold answer texts (at least one per question).

    Returns:
        `dict[str, float]`: `{"exact_match": ..., "f1": ...}`, both in percent (0-100).
    """
    if not references:
        raise ValueError("compute_squad_v1 needs at least one reference question; got none.")
    exact_match = f1 = 0.0
    unanswered = []
    for question_id, gold_answers in references.items():
        if not gold_answers:
            raise ValueError(
                f"Question {question_id!r} has no gold answers; SQuAD v1.1 scoring needs at least one per question."
            )
        if question_id not in predictions:
            unanswered.append(question_id)
            continue
        prediction = predictions[question_id]
        exact_match += max(exact_match_score(prediction, gold) for gold in gold_answers)
        f1 += max(f1_score(prediction, gold) for gold in gold_answers)
    if unanswered:
        logger.warning(f"{len(unanswered)} question(s) have no prediction and score 0, e.g. {unanswered[0]!r}.")
    return {"exact_match": 100.0 * exact_match / len(references), "f1": 100.0 * f1 / len(references)}


def load_evaluate_squad_metric() -> Any | None:
    """Load `evaluate.load("squad")` once and cache the outcome.

    The Hub metric is not tried when `HF_EVALUATE_OFFLINE` or `HF_HUB_OFFLINE` is set, so offline runs skip the
    network look-up. Any failure (no network, `evaluate` missing, ...) is remembered and returns None.

    Returns:
        The `evaluate` metric, or None when it cannot be loaded.
    """
    global _evaluate_squad_metric
    if _evaluate_squad_metric is None:
        _evaluate_squad_metric = False
        offline = any(
            os.environ.get(name, "").upper() in _TRUE_VALUES for name in ("HF_EVALUATE_OFFLINE", "HF_HUB_OFFLINE")
        )
        if not offline:
            try:
                import evaluate

                _evaluate_squad_metric = evaluate.load("squad")
            except Exception as error:  # any failure means "use the built-in implementation"
                logger.info(f"evaluate.load('squad') is unavailable ({type(error).__name__}); using hf_lrtuner's own.")
    return _evaluate_squad_metric or None


def _references_by_id(references: Mapping[str, list[str]] | Any) -> dict[str, list[str]]:
    if isinstance(references, Mapping):
        return {question_id: list(answers) for question_id, answers in references.items()}
    if hasattr(references, "column_names"):  # a datasets.Dataset with the SQuAD columns
        return {
            question_id: list(answers["text"]) for question_id, answers in zip(references["id"], references["answers"])
        }
    if isinstance(references, Iterable):
        return {record["id"]: list(record["answers"]["text"]) for record in references}
    raise TypeError(
        f"references must be a dict id -> answer texts or a SQuAD dataset, got {type(references).__name__}."
    )


def squad_metrics(predictions: Mapping[str, str], references: Mapping[str, list[str]] | Any) -> dict[str, float]:
    """SQuAD v1.1 exact match and F1, with `evaluate.load("squad")` when available and the built-in rules otherwise.

    Args:
        predictions (`Mapping[str, str]`): Question id -> predicted answer text.
        references (`Mapping[str, list[str]]` or `datasets.Dataset`): Question id -> gold answer texts, or a dataset
            (or list of records) with the `load_dataset("squad")` columns `id` and `answers`.

    Returns:
        `dict[str, float]`: `{"exact_match": ..., "f1": ...}` in percent, over all reference questions.
    """
    references = _references_by_id(references)
    metric = load_evaluate_squad_metric()
    if metric is None:
        return compute_squad_v1(predictions, references)
    # The Hub metric needs one prediction per reference; an empty answer scores 0 like a missing one.
    scores = metric.compute(
        predictions=[{"id": qid, "prediction_text": predictions.get(qid, "")} for qid in references],
        references=[
            {"id": qid, "answers": {"text": answers, "answer_start": [0] * len(answers)}}
            for qid, answers in references.items()
        ],
    )
    return {"exact_match": float(scores["exact_match"]), "f1": float(scores["f1"])}
