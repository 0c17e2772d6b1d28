"""SQuAD loading, article split, features and post-processing, on real records from data/squad_offline."""

import copy
import gzip
import json

import numpy as np
import pytest
from datasets import Dataset

from hf_lrtuner.squad import (
    SQUAD_FEATURES,
    SquadFormatError,
    build_train_features,
    build_validation_features,
    load_squad_json,
    postprocess_qa_predictions,
    read_squad_json,
    split_by_article,
)
from squad_fixtures import (
    OFFLINE_SQUAD_DIR,
    offline_squad_examples,
    offline_squad_json,
    squad_texts,
    tiny_wordpiece_tokenizer,
    write_squad_json,
)


@pytest.fixture(scope="module")
def records():
    """The first 30 training questions (several paragraphs of Super_Bowl_50), nested."""
    return offline_squad_json("train", 30)


@pytest.fixture(scope="module")
def tokenizer(records):
    return tiny_wordpiece_tokenizer(squad_texts(records))


# ----------------------------------------------------------------------------------------------- loading


def test_offline_files_are_split_by_article():
    train = load_squad_json(OFFLINE_SQUAD_DIR / "train.json.gz")
    held_out = load_squad_json(OFFLINE_SQUAD_DIR / "eval.json.gz")
    assert (len(train), len(held_out)) == (8149, 2421)
    assert train.features == SQUAD_FEATURES
    assert len(set(train["title"])) == 38 and len(set(held_out["title"])) == 10
    assert not set(train["title"]) & set(held_out["title"])
    assert not set(train["id"]) & set(held_out["id"])


def test_load_squad_json_matches_hub_schema(tmp_path, records):
    path = write_squad_json(records, tmp_path / "part.json")
    dataset = load_squad_json(path)
    assert dataset.column_names == ["id", "title", "context", "question", "answers"]
    first = records["data"][0]["paragraphs"][0]["qas"][0]
    assert dataset[0]["id"] == first["id"]
    assert dataset[0]["answers"] == {
        "text": [answer["text"] for answer in first["answers"]],
        "answer_start": [answer["answer_start"] for answer in first["answers"]],
    }


def titles(squad):
    return [article["title"] for article in squad["data"]]


def test_split_by_article_is_disjoint_complete_and_deterministic():
    squad = read_squad_json(OFFLINE_SQUAD_DIR / "eval.json.gz")
    train, held_out = split_by_article(squad, n_eval_articles=3, seed=1)
    assert len(titles(held_out)) == 3 and not set(titles(train)) & set(titles(held_out))
    assert sorted(titles(train) + titles(held_out)) == sorted(titles(squad))
    assert split_by_article(squad, n_eval_articles=3, seed=1) == (train, held_out)
    assert train["version"] == held_out["version"] == squad["version"]
    assert len(split_by_article(squad, eval_fraction=0.2, seed=1)[1]["data"]) == 2
    with pytest.raises(ValueError, match="exactly one"):
        split_by_article(squad, eval_fraction=0.2, n_eval_articles=2)
    with pytest.raises(ValueError, match="at least one article"):
        split_by_article(squad, n_eval_articles=len(squad["data"]))


# ----------------------------------------------------------------------------------------------- bad inputs


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.json does not exist"):
        load_squad_json(tmp_path / "nothing.json")


def test_malformed_json_names_line_and_column(tmp_path):
    path = tmp_path / "broken.json.gz"
    with gzip.open(path, "wt") as file:
        file.write('{"data": [\n  {"title": "x",,}\n]}')
    with pytest.raises(SquadFormatError, match=r"broken.json.gz is not valid JSON: .* line 2, column 17"):
        load_squad_json(path)


def test_flat_file_is_rejected_with_the_expected_format(tmp_path):
    path = tmp_path / "flat.json"
    path.write_text(json.dumps([{"id": "1", "question": "q", "context": "c"}]))
    with pytest.raises(SquadFormatError, match='no top-level "data" list'):
        load_squad_json(path)


def _first_question(squad):
    return squad["data"][0]["paragraphs"][0]["qas"][0]


def test_question_without_answers(tmp_path, records):
    squad = copy.deepcopy(records)
    question = _first_question(squad)
    question["answers"] = []
    path = write_squad_json(squad, tmp_path / "unanswered.json")
    with pytest.raises(
        SquadFormatError, match=rf"question '{question['id']}' \(article 'Super_Bowl_50'\) has no answers"
    ):
        load_squad_json(path)
    assert len(load_squad_json(path, require_answers=False)) == 30


def test_misaligned_answer_start(tmp_path, records):
    squad = copy.deepcopy(records)
    question = _first_question(squad)
    question["answers"][0]["answer_start"] += 1
    path = write_squad_json(squad, tmp_path / "shifted.json")
    with pytest.raises(SquadFormatError, match=rf"answer #0 of question '{question['id']}'.*does not point at"):
        load_squad_json(path)


def test_missing_key(tmp_path, records):
    squad = copy.deepcopy(records)
    question = _first_question(squad)
    del question["question"]
    path = write_squad_json(squad, tmp_path / "no_question.json")
    with pytest.raises(
        SquadFormatError, match=rf"no_question.json: question '{question['id']}'.* has no 'question' key"
    ):
        load_squad_json(path)


def test_max_seq_length_too_small_for_question(tokenizer):
    examples = offline_squad_examples("train", 5)
    with pytest.raises(
        ValueError, match=r"Question .[0-9a-f]+. has \d+ tokens.*Increase max_seq_length \(--max_seq_length\)"
    ):
        build_train_features(examples, tokenizer, max_seq_length=16, doc_stride=8)
    with pytest.raises(ValueError, match="doc_stride"):
        build_validation_features(examples, tokenizer, max_seq_length=64, doc_stride=64)


def test_zero_features(tokenizer):
    empty = Dataset.from_dict({name: [] for name in SQUAD_FEATURES}, features=SQUAD_FEATURES)
    with pytest.raises(ValueError, match="training data gave no features"):
        build_train_features(empty, tokenizer)


# ----------------------------------------------------------------------------------------------- features


def test_train_features_point_at_the_answer(tokenizer):
    examples = offline_squad_examples("train", 30)
    # A short window forces long contexts into several overlapping features, some without the answer.
    features = build_train_features(examples, tokenizer, max_seq_length=96, doc_stride=32)
    assert len(features) > len(examples)
    assert len({len(ids) for ids in features["input_ids"]}) > 1  # not padded
    # The validation features have the same windows, plus the offsets and example ids to check the labels against.
    windows = build_validation_features(examples, tokenizer, max_seq_length=96, doc_stride=32)
    assert windows["input_ids"] == features["input_ids"]
    gold = {
        example["id"]: (example["context"], example["answers"]["answer_start"][0], example["answers"]["text"][0])
        for example in examples
    }
    normalize = tokenizer.backend_tokenizer.normalizer.normalize_str
    answered, labelled_cls = set(), 0
    for input_ids, start, end, example_id, offsets in zip(
        features["input_ids"],
        features["start_positions"],
        features["end_positions"],
        windows["example_id"],
        windows["offset_mapping"],
    ):
        context, answer_start, text = gold[example_id]
        answer_end = answer_start + len(text)
        if start == end == 0:  # [CLS]: the answer is not entirely inside this window
            window = [offset for offset in offsets if offset is not None]
            assert not window[0][0] <= answer_start < answer_end <= window[-1][1]
            labelled_cls += 1
            continue
        # The labels are the tokens holding the first and the last character of the answer...
        assert offsets[start][0] <= answer_start < offsets[start][1]
        assert offsets[end][0] < answer_end <= offsets[end][1]
        # ...and those tokens decode back to the context there, which is the answer (answers that end inside a word,
        # e.g. "gold" in "golden", get the whole token).
        span = context[offsets[start][0] : offsets[end][1]]
        assert text in span
        assert tokenizer.decode(input_ids[start : end + 1]).replace(" ", "") == normalize(span).replace(" ", "")
        answered.add(example_id)
    assert answered == set(examples["id"])
    assert labelled_cls > 0


def test_validation_features_keep_example_ids_and_mask_non_context(tokenizer):
    examples = offline_squad_examples("train", 30)
    features = build_validation_features(examples, tokenizer, max_seq_length=96, doc_stride=32)
    assert set(features["example_id"]) == set(examples["id"])
    contexts = dict(zip(examples["id"], examples["context"]))
    for feature in features:
        offsets = feature["offset_mapping"]
        assert offsets[0] is None and offsets[-1] is None  # [CLS] ... [SEP]
        first_context = next(i for i, offset in enumerate(offsets) if offset is not None)
        assert all(offset is None for offset in offsets[:first_context])  # the question is masked
        context = contexts[feature["example_id"]]
        for offset in offsets[first_context:-1]:
            assert offset is not None and 0 <= offset[0] < offset[1] <= len(context)


# ----------------------------------------------------------------------------------------------- post-processing

CONTEXT = "Paris is the capital and largest city of France."
#          [CLS] q     q     [SEP] Paris   is      the      capital   and       largest   city      of        France
OFFSETS = [None, None, None, None, [0, 5], [6, 8], [9, 12], [13, 20], [21, 24], [25, 32], [33, 37], [38, 40], [41, 47]]
OFFSETS += [[47, 48], None]  # "." and the final [SEP]; index 7 is "capital", 12 is "France"


def _predict(start_scores, end_scores, length=len(OFFSETS), **kwargs):
    """Post-process one feature whose logits are -10 except at the given {index: score} positions."""
    start_logits, end_logits = np.full((1, length), -10.0), np.full((1, length), -10.0)
    for index, score in start_scores.items():
        start_logits[0, index] = score
    for index, score in end_scores.items():
        end_logits[0, index] = score
    examples = [{"id": "q", "context": CONTEXT}]
    features = [{"example_id": "q", "offset_mapping": OFFSETS}]
    return postprocess_qa_predictions(examples, features, start_logits, end_logits, **kwargs)["q"]


def test_postprocess_picks_best_valid_span():
    assert _predict({7: 5, 12: 1}, {7: 5, 12: 3}) == "capital"
    assert _predict({4: 5}, {12: 5}) == "Paris is the capital and largest city of France"


def test_postprocess_rejects_end_before_start():
    assert _predict({12: 10, 7: 1}, {4: 10, 7: 1}) == "capital"


def test_postprocess_rejects_too_long_spans():
    assert _predict({4: 10, 7: 1}, {12: 10, 7: 1}, max_answer_length=3) == "capital"


def test_postprocess_skips_question_special_and_padding_tokens():
    # Index 1-2: question tokens, 0: [CLS], 17-18: padding beyond the feature (logits padded to length 20).
    assert _predict({0: 30, 1: 20, 17: 40, 12: 1}, {0: 30, 2: 20, 18: 40, 12: 1}, length=20) == "France"


def test_postprocess_n_best_size_limits_candidates():
    # With one candidate each, the only pair (12, 4) is invalid, so there is no answer.
    assert _predict({12: 10, 7: 1}, {4: 10, 7: 1}, n_best_size=1) == ""


def test_postprocess_best_span_over_several_features():
    examples = [{"id": "q", "context": CONTEXT}]
    features = [{"example_id": "q", "offset_mapping": OFFSETS}, {"example_id": "q", "offset_mapping": OFFSETS}]
    start, end = np.full((2, len(OFFSETS)), -10.0), np.full((2, len(OFFSETS)), -10.0)
    start[0, 7] = end[0, 7] = 1.0  # "capital" scores 2 in the first feature
    start[1, 12] = end[1, 12] = 2.0  # "France" scores 4 in the second
    assert postprocess_qa_predictions(examples, features, start, end) == {"q": "France"}
    with pytest.raises(ValueError, match="2 features but 1 start"):
        postprocess_qa_predictions(examples, features, start[:1], end[:1])
