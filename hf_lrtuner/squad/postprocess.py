"""Post-processing of extractive question answering: from start/end logits back to answer texts.

The counterpart of `postprocess_qa_predictions` in transformers' question-answering example (`utils_qa.py`),
for SQuAD v1.1, where every question has an answer.
"""

import collections
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from datasets import Dataset


def postprocess_qa_predictions(
    examples: Dataset | Sequence[Mapping[str, Any]],
    features: Dataset | Sequence[Mapping[str, Any]],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> dict[str, str]:
    """Turn start/end logits of evaluation features into one answer text per example (SQuAD v1.1, always answers).

    For every feature of an example, the `n_best_size` highest start and end logits are combined; spans that end
    before they start, are longer than `max_answer_length` tokens or touch a token outside the context (question,
    special or padding tokens) are skipped. The span with the highest start + end logit over all features of the
    example wins; an example without any valid span gets the empty answer.

    Args:
        examples (`datasets.Dataset` or sequence of dicts): The examples, with `id` and `context`.
        features (`datasets.Dataset` or sequence of dicts): Their features from `prepare_validation_features`, with
            `example_id` and `offset_mapping`, in the same order as the logits.
        start_logits (`np.ndarray`): Start logits, shape `(num_features, seq_len)`; rows may be padded (e.g. with
            -100) beyond a feature's length.
        end_logits (`np.ndarray`): End logits, same shape.
        n_best_size (`int`, *optional*, defaults to 20): Number of start and of end candidates per feature.
        max_answer_length (`int`, *optional*, defaults to 30): Longest answer in tokens.

    Returns:
        `dict[str, str]`: Example id -> predicted answer text, in the order of `examples`.
    """
    start_logits, end_logits = np.asarray(start_logits), np.asarray(end_logits)
    if not len(features) == len(start_logits) == len(end_logits):
        raise ValueError(
            f"Got {len(features)} features but {len(start_logits)} start and {len(end_logits)} end logit rows; pass "
            "the logits of exactly these features, in the same order."
        )
    example_ids = list(examples["id"]) if isinstance(examples, Dataset) else [example["id"] for example in examples]
    contexts = (
        list(examples["context"]) if isinstance(examples, Dataset) else [example["context"] for example in examples]
    )
    if isinstance(features, Dataset):
        feature_example_ids, all_offsets = list(features["example_id"]), list(features["offset_mapping"])
    else:
        feature_example_ids = [feature["example_id"] for feature in features]
        all_offsets = [feature["offset_mapping"] for feature in features]

    example_index = {example_id: index for index, example_id in enumerate(example_ids)}
    features_per_example = collections.defaultdict(list)
    for feature_index, example_id in enumerate(feature_example_ids):
        if example_id not in example_index:
            raise ValueError(f"Feature #{feature_index} belongs to example {example_id!r}, which is not in examples.")
        features_per_example[example_index[example_id]].append(feature_index)

    predictions = {}
    for index, (example_id, context) in enumerate(zip(example_ids, contexts)):
        best_score, best_text = -math.inf, ""
        for feature_index in features_per_example[index]:
            feature_start_logits, feature_end_logits = start_logits[feature_index], end_logits[feature_index]
            offsets = all_offsets[feature_index]
            start_candidates = np.argsort(feature_start_logits)[-1 : -n_best_size - 1 : -1]
            end_candidates = np.argsort(feature_end_logits)[-1 : -n_best_size - 1 : -1]
            for start in start_candidates:
                if start >= len(offsets) or offsets[start] is None:
                    continue
                for end in end_candidates:
                    if (
                        end >= len(offsets)
                        or offsets[end] is None
                        or end < start
                        or end - start + 1 > max_answer_length
                    ):
                        continue
                    score = feature_start_logits[start] + feature_end_logits[end]
                    if score > best_score:
                        best_score, best_text = score, context[offsets[start][0] : offsets[end][1]]
        predictions[example_id] = best_text
    return predictions
