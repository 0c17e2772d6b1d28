"""Tokenization of SQuAD examples into training and evaluation features, as in transformers' `run_qa.py`.

Long contexts become several overlapping windows (`doc_stride` tokens overlap). Training features are labelled with
the token positions of the answer; evaluation features keep the id of their example and the character offsets of
their context tokens, which `postprocess_qa_predictions` needs to turn logits back into answer texts. Features are not
padded, so batches can be padded dynamically (`DataCollatorWithPadding`).
"""

from collections.abc import Mapping, Sequence

import numpy as np
from datasets import Dataset
from transformers import PreTrainedTokenizerBase


def _tokenize_questions_and_contexts(
    examples: Mapping[str, Sequence], tokenizer: PreTrainedTokenizerBase, max_seq_length: int, doc_stride: int
):
    """Tokenize question/context pairs into overlapping windows, after checking that the context has room."""
    if not 0 <= doc_stride < max_seq_length:
        raise ValueError(
            f"doc_stride ({doc_stride}) must be at least 0 and smaller than max_seq_length ({max_seq_length})."
        )
    # Some questions start with whitespace, which wastes room in the window (the official run_qa.py does the same).
    questions = [question.lstrip() for question in examples["question"]]
    if not questions:
        return None
    question_lengths = [len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]]
    longest = int(np.argmax(question_lengths))
    num_special_tokens = tokenizer.num_special_tokens_to_add(pair=True)
    context_room = max_seq_length - question_lengths[longest] - num_special_tokens
    # Each window must hold more context tokens than the stride it overlaps by, or the tokenizer panics.
    if context_room <= doc_stride:
        raise ValueError(
            f"Question {examples['id'][longest]!r} has {question_lengths[longest]} tokens, so with "
            f"max_seq_length={max_seq_length} and {num_special_tokens} special tokens only {max(context_room, 0)} "
            f"context tokens fit in a feature, but more than doc_stride={doc_stride} are needed. Increase "
            "max_seq_length (--max_seq_length) or lower doc_stride (--doc_stride)."
        )
    pad_on_right = tokenizer.padding_side == "right"
    tokenized = tokenizer(
        questions if pad_on_right else examples["context"],
        examples["context"] if pad_on_right else questions,
        truncation="only_second" if pad_on_right else "only_first",
        max_length=max_seq_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    return tokenized


def prepare_train_features(
    examples: Mapping[str, Sequence],
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int = 384,
    doc_stride: int = 128,
) -> dict[str, list]:
    """Tokenize a batch of SQuAD examples into training features, as the official `run_qa.py` does.

    Long contexts are split into several overlapping features (`doc_stride` tokens overlap). Each feature is labelled
    with the token positions of the first answer, or with the position of the CLS token when the answer is not
    (entirely) inside that feature's window. Features are not padded; pad per batch with `DataCollatorWithPadding`.
    Use with `Dataset.map(..., batched=True, remove_columns=...)` or call `build_train_features`.

    Args:
        examples (`Mapping[str, Sequence]`): A batch with the columns `id`, `question`, `context` and `answers`.
        tokenizer (`PreTrainedTokenizerBase`): A fast tokenizer (offset mappings are needed).
        max_seq_length (`int`, *optional*, defaults to 384): Maximum length of a feature in tokens, question included.
        doc_stride (`int`, *optional*, defaults to 128): Overlap in tokens between consecutive windows of a context.

    Returns:
        `dict[str, list]`: The tokenizer outputs (`input_ids`, `attention_mask`, ...) plus `start_positions` and
        `end_positions`, one entry per feature.

    Raises:
        `ValueError`: A question is too long for `max_seq_length` to leave more than `doc_stride` context tokens.
    """
    tokenized = _tokenize_questions_and_contexts(examples, tokenizer, max_seq_length, doc_stride)
    if tokenized is None:
        return {"input_ids": [], "attention_mask": [], "start_positions": [], "end_positions": []}
    context_index = 1 if tokenizer.padding_side == "right" else 0
    sample_mapping = tokenized.pop("overflow_to_sample_mapping")
    offset_mapping = tokenized.pop("offset_mapping")
    tokenized["start_positions"] = []
    tokenized["end_positions"] = []
    for i, offsets in enumerate(offset_mapping):
        input_ids = tokenized["input_ids"][i]
        cls_index = input_ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in input_ids else 0
        sequence_ids = tokenized.sequence_ids(i)
        answers = examples["answers"][sample_mapping[i]]
        start_position = end_position = cls_index
        if answers["answer_start"]:
            start_char = answers["answer_start"][0]
            end_char = start_char + len(answers["text"][0])
            token_start = sequence_ids.index(context_index)
            token_end = len(sequence_ids) - 1 - sequence_ids[::-1].index(context_index)
            if offsets[token_start][0] <= start_char and offsets[token_end][1] >= end_char:
                # Move inwards from both ends of the context to the tokens that hold the answer's first/last char.
                while token_start < len(offsets) and offsets[token_start][0] <= start_char:
                    token_start += 1
                while offsets[token_end][1] >= end_char:
                    token_end -= 1
                start_position, end_position = token_start - 1, token_end + 1
        tokenized["start_positions"].append(start_position)
        tokenized["end_positions"].append(end_position)
    return dict(tokenized)


def prepare_validation_features(
    examples: Mapping[str, Sequence],
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int = 384,
    doc_stride: int = 128,
) -> dict[str, list]:
    """Tokenize a batch of SQuAD examples into evaluation features, as the official `run_qa.py` does.

    Each feature keeps the id of its example (`example_id`) and an `offset_mapping` in which every token outside the
    context (question, special tokens) is `None`, so post-processing can only pick spans of the context. Features are
    not padded. Use with `Dataset.map(..., batched=True, remove_columns=...)` or call `build_validation_features`.

    Args:
        examples (`Mapping[str, Sequence]`): A batch with the columns `id`, `question` and `context`.
        tokenizer (`PreTrainedTokenizerBase`): A fast tokenizer (offset mappings are needed).
        max_seq_length (`int`, *optional*, defaults to 384): Maximum length of a feature in tokens, question included.
        doc_stride (`int`, *optional*, defaults to 128): Overlap in tokens between consecutive windows of a context.

    Returns:
        `dict[str, list]`: The tokenizer outputs plus `example_id` and `offset_mapping`, one entry per feature.

    Raises:
        `ValueError`: A question is too long for `max_seq_length` to leave more than `doc_stride` context tokens.
    """
    tokenized = _tokenize_questions_and_contexts(examples, tokenizer, max_seq_length, doc_stride)
    if tokenized is None:
        return {"input_ids": [], "attention_mask": [], "example_id": [], "offset_mapping": []}
    context_index = 1 if tokenizer.padding_side == "right" else 0
    sample_mapping = tokenized.pop("overflow_to_sample_mapping")
    tokenized["example_id"] = [examples["id"][sample_index] for sample_index in sample_mapping]
    tokenized["offset_mapping"] = [
        [
            offset if sequence_id == context_index else None
            for offset, sequence_id in zip(offsets, tokenized.sequence_ids(i))
        ]
        for i, offsets in enumerate(tokenized["offset_mapping"])
    ]
    return dict(tokenized)


def _build_features(prepare_fn, examples: Dataset, tokenizer, max_seq_length: int, doc_stride: int, purpose: str):
    features = examples.map(
        prepare_fn,
        batched=True,
        remove_columns=examples.column_names,
        fn_kwargs={"tokenizer": tokenizer, "max_seq_length": max_seq_length, "doc_stride": doc_stride},
        desc=f"Tokenizing {purpose} examples",
    )
    if len(features) == 0:
        raise ValueError(
            f"The {purpose} data gave no features because it has no questions ({len(examples)} examples). Check the "
            f"{purpose} file and the --max_{'train' if purpose == 'training' else 'eval'}_examples setting."
        )
    return features


def build_train_features(
    examples: Dataset, tokenizer: PreTrainedTokenizerBase, max_seq_length: int = 384, doc_stride: int = 128
) -> Dataset:
    """Map `prepare_train_features` over a SQuAD dataset and check that it produced features.

    Args:
        examples (`datasets.Dataset`): SQuAD examples (`load_squad_json` or `load_dataset("squad")` schema).
        tokenizer (`PreTrainedTokenizerBase`): A fast tokenizer.
        max_seq_length (`int`, *optional*, defaults to 384): Maximum length of a feature in tokens.
        doc_stride (`int`, *optional*, defaults to 128): Overlap in tokens between windows of a long context.

    Returns:
        `datasets.Dataset` of unpadded training features with `start_positions` and `end_positions`.

    Raises:
        `ValueError`: No features (no examples), or a question too long for `max_seq_length`.
    """
    return _build_features(prepare_train_features, examples, tokenizer, max_seq_length, doc_stride, "training")


def build_validation_features(
    examples: Dataset, tokenizer: PreTrainedTokenizerBase, max_seq_length: int = 384, doc_stride: int = 128
) -> Dataset:
    """Map `prepare_validation_features` over a SQuAD dataset and check that it produced features.

    Args:
        examples (`datasets.Dataset`): SQuAD examples (`load_squad_json` or `load_dataset("squad")` schema).
        tokenizer (`PreTrainedTokenizerBase`): A fast tokenizer.
        max_seq_length (`int`, *optional*, defaults to 384): Maximum length of a feature in tokens.
        doc_stride (`int`, *optional*, defaults to 128): Overlap in tokens between windows of a long context.

    Returns:
        `datasets.Dataset` of unpadded evaluation features with `example_id` and `offset_mapping`.

    Raises:
        `ValueError`: No features (no examples), or a question too long for `max_seq_length`.
    """
    return _build_features(prepare_validation_features, examples, tokenizer, max_seq_length, doc_stride, "evaluation")
