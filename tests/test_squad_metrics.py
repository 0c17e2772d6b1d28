"""SQuAD v1.1 exact match and F1: golden values computed by hand with the official rules."""

import os

import pytest

import hf_lrtuner.squad.metrics as squad_metrics_module
from hf_lrtuner.squad import (
    compute_squad_v1,
    exact_match_score,
    f1_score,
    load_evaluate_squad_metric,
    normalize_answer,
    squad_metrics,
)


@pytest.fixture
def offline_metric(monkeypatch):
    """Force the built-in implementation, as on a machine without the Hub."""
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    monkeypatch.setattr(squad_metrics_module, "_evaluate_squad_metric", None)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("  an   apple,  the pie. ", "apple pie"),
        ("Levi's Stadium", "levis stadium"),
        ("theatre another", "theatre another"),  # articles only as whole words
        ("A", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_ignores_case_punctuation_and_articles():
    assert exact_match_score("the Eiffel Tower", "Eiffel tower.")
    assert exact_match_score("Denver  Broncos", "denver broncos")
    assert not exact_match_score("Eiffel", "Eiffel Tower")


@pytest.mark.parametrize(
    "prediction, ground_truth, expected",
    [
        ("Eiffel Tower in Paris", "the Eiffel Tower", 2 * 0.5 * 1.0 / 1.5),  # P 2/4, R 2/2
        ("paris paris france", "Paris", 2 * (1 / 3) * 1.0 / (1 / 3 + 1)),  # repeated tokens count once each: P 1/3
        ("Santa Clara", "Santa Clara, California", 2 * 1.0 * (2 / 3) / (1 + 2 / 3)),  # P 1, R 2/3 -> 0.8
        ("London", "Paris", 0.0),
        ("the", "a", 0.0),  # both normalise to nothing: no shared token
    ],
)
def test_f1_score_by_hand(prediction, ground_truth, expected):
    assert f1_score(prediction, ground_truth) == pytest.approx(expected)


REFERENCES = {
    "q1": ["Denver Broncos", "the Broncos"],
    "q2": ["Santa Clara, California", "Levi's Stadium"],
    "q3": ["1"],
}
PREDICTIONS = {"q1": "Broncos", "q2": "Levi's Stadium in Santa Clara", "q4": "not a reference question"}
# q1: exact match with the second gold answer. q2: best F1 is against "Levi's Stadium": P 2/5, R 1 -> 4/7.
# q3: no prediction -> 0. q4 is ignored.
EXPECTED = {"exact_match": 100 * 1 / 3, "f1": 100 * (1 + 4 / 7) / 3}


def test_compute_squad_v1_takes_best_gold_answer_and_scores_missing_as_zero():
    assert compute_squad_v1(PREDICTIONS, REFERENCES) == pytest.approx(EXPECTED)


def test_compute_squad_v1_rejects_empty_references():
    with pytest.raises(ValueError, match="at least one reference"):
        compute_squad_v1({}, {})
    with pytest.raises(ValueError, match="no gold answers"):
        compute_squad_v1({"q": "x"}, {"q": []})


def test_squad_metrics_offline_accepts_dict_and_dataset(offline_metric):
    from datasets import Dataset

    assert squad_metrics(PREDICTIONS, REFERENCES) == pytest.approx(EXPECTED)
    references = Dataset.from_dict(
        {
            "id": list(REFERENCES),
            "answers": [{"text": texts, "answer_start": [0] * len(texts)} for texts in REFERENCES.values()],
        }
    )
    assert squad_metrics(PREDICTIONS, references) == pytest.approx(EXPECTED)
    assert load_evaluate_squad_metric() is None  # the offline decision is cached, no Hub look-up


@pytest.mark.slow  # tries to load the metric from the Hub
def test_matches_evaluate_squad_metric(monkeypatch):
    if any(os.environ.get(name) for name in ("HF_EVALUATE_OFFLINE", "HF_HUB_OFFLINE")):
        pytest.skip("HF_EVALUATE_OFFLINE/HF_HUB_OFFLINE is set, so evaluate.load('squad') is not tried.")
    monkeypatch.setattr(squad_metrics_module, "_evaluate_squad_metric", None)
    if load_evaluate_squad_metric() is None:
        pytest.skip("evaluate.load('squad') needs the Hugging Face Hub or a cached copy; it is not reachable here.")
    predictions = {**PREDICTIONS, "q3": "one"}
    assert squad_metrics(predictions, REFERENCES) == pytest.approx(compute_squad_v1(predictions, REFERENCES))
