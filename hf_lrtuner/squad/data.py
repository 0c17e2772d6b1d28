"""Loading SQuAD v1.1: the official nested JSON files as `datasets.Dataset`s, and a split by article.

`load_squad_json` reads a local official SQuAD v1.1 file (`.json` or `.json.gz`, as shipped in `data/squad_offline`)
into the schema of `datasets.load_dataset("squad")`, so the rest of `hf_lrtuner.squad` runs the same on either:
offline on local files, or on the Hub's copy where the Hub is reachable. Every record is validated; a bad file raises
a `SquadFormatError` that names the file, the record and the fix. `split_by_article` holds out whole articles, so no
context is in both parts.
"""

import gzip
import json
import os
import random
from collections.abc import Mapping
from typing import Any

from datasets import Dataset, Features, Value
from datasets import Sequence as SequenceFeature


SQUAD_FEATURES = Features(
    {
        "id": Value("string"),
        "title": Value("string"),
        "context": Value("string"),
        "question": Value("string"),
        "answers": SequenceFeature({"text": Value("string"), "answer_start": Value("int32")}),
    }
)
"""The columns of `load_dataset("squad")`, which `load_squad_json` reproduces."""

_SQUAD_SHAPE = (
    '{"data": [{"title": ..., "paragraphs": [{"context": ..., "qas": [{"id": ..., "question": ..., '
    '"answers": [{"text": ..., "answer_start": ...}]}]}]}]}'
)


class SquadFormatError(ValueError):
    """Raised when a file or record is not valid SQuAD v1.1; the message names the file, the record and the fix."""


def read_squad_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read an official SQuAD v1.1 JSON file (nested format) without flattening it.

    Args:
        path (`str` or `os.PathLike`): A `.json` file, or a gzip-compressed `.json.gz` file.

    Returns:
        `dict`: The parsed JSON, with a `"data"` list of articles.

    Raises:
        `FileNotFoundError`: The file does not exist.
        `SquadFormatError`: The file cannot be decompressed or decoded, is not valid JSON (the message gives line and
            column) or has no `"data"` list of articles.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"SQuAD file {path} does not exist. Pass the path of an official SQuAD v1.1 JSON file (.json or .json.gz),"
            " for example data/squad_offline/train.json.gz."
        )
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as error:
        raise SquadFormatError(
            f"Cannot read {path}: {error}. Files ending in .gz must be gzip-compressed and all files UTF-8 encoded."
        ) from error
    try:
        squad = json.loads(text)
    except json.JSONDecodeError as error:
        raise SquadFormatError(
            f"{path} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}. Repair the file or "
            "download the official SQuAD v1.1 JSON again."
        ) from error
    if not isinstance(squad, dict) or not isinstance(squad.get("data"), list):
        raise SquadFormatError(
            f'{path} has no top-level "data" list of articles. Expected the official nested SQuAD v1.1 format '
            f"{_SQUAD_SHAPE}; flat one-record-per-question files must be converted to it."
        )
    return squad


def _field(record: Any, key: str, expected_type: type, where: str, source: str) -> Any:
    """Return `record[key]`; raise a `SquadFormatError` saying where and how to fix it if missing or mistyped."""
    if not isinstance(record, dict) or key not in record:
        raise SquadFormatError(
            f"{source}: {where} has no {key!r} key. Official SQuAD v1.1 records look like {_SQUAD_SHAPE}; add the key "
            "or convert the file to this format."
        )
    value = record[key]
    # bool is an int subclass, but `"answer_start": true` is certainly a mistake.
    if not isinstance(value, expected_type) or isinstance(value, bool):
        raise SquadFormatError(
            f"{source}: {where} has {key!r} of type {type(value).__name__}, expected {expected_type.__name__}. "
            f"Fix the record to follow {_SQUAD_SHAPE}."
        )
    return value


def squad_json_to_dataset(
    squad: Mapping[str, Any], require_answers: bool = True, source: str = "SQuAD data"
) -> Dataset:
    """Flatten and validate nested SQuAD v1.1 data into one row per question, as `load_dataset("squad")` does.

    Args:
        squad (`Mapping[str, Any]`): The parsed official JSON, `{"data": [{"title", "paragraphs": [...]}]}`.
        require_answers (`bool`, *optional*, defaults to `True`): Reject questions without answers. Training and
            scoring need at least one answer per question; only prediction-only data can do without.
        source (`str`, *optional*, defaults to `"SQuAD data"`): Name of the data (usually its path), used in errors.

    Returns:
        `datasets.Dataset` with columns `id`, `title`, `context`, `question` and `answers`
        (`{"text": [...], "answer_start": [...]}`), features `SQUAD_FEATURES`.

    Raises:
        `SquadFormatError`: A key is missing or mistyped, a question id repeats, a question has no answer while
            `require_answers` is set, or an `answer_start` does not point at its answer text in the context.
    """
    columns = {name: [] for name in SQUAD_FEATURES}
    seen_ids = {}
    for article_index, article in enumerate(_field(squad, "data", list, "the top level", source)):
        title = _field(article, "title", str, f"article #{article_index}", source)
        where_article = f"article {title!r}"
        for paragraph_index, paragraph in enumerate(_field(article, "paragraphs", list, where_article, source)):
            where_paragraph = f"paragraph #{paragraph_index} of {where_article}"
            context = _field(paragraph, "context", str, where_paragraph, source)
            for qa_index, qa in enumerate(_field(paragraph, "qas", list, where_paragraph, source)):
                question_id = _field(qa, "id", str, f"question #{qa_index} of {where_paragraph}", source)
                where = f"question {question_id!r} ({where_article})"
                if question_id in seen_ids:
                    raise SquadFormatError(
                        f"{source}: {where} repeats the id of a question in article {seen_ids[question_id]!r}. "
                        "Question ids must be unique because predictions are keyed by id; rename one of them."
                    )
                seen_ids[question_id] = title
                question = _field(qa, "question", str, where, source)
                answers = _field(qa, "answers", list, where, source)
                if require_answers and not answers:
                    raise SquadFormatError(
                        f"{source}: {where} has no answers. SQuAD v1.1 training and scoring need at least one answer "
                        "per question (unanswerable SQuAD v2 questions are not supported); add an answer or remove "
                        "the question."
                    )
                texts, starts = [], []
                for answer_index, answer in enumerate(answers):
                    where_answer = f"answer #{answer_index} of {where}"
                    text = _field(answer, "text", str, where_answer, source)
                    start = _field(answer, "answer_start", int, where_answer, source)
                    found = context[start : start + len(text)] if start >= 0 else ""
                    if found != text:
                        raise SquadFormatError(
                            f"{source}: {where_answer}: answer_start={start} does not point at the answer {text!r}; "
                            f"the context there reads {found!r}. answer_start must be the 0-based character offset "
                            f"of the answer in the context (here it occurs at {context.find(text)}; -1 means nowhere)."
                        )
                    texts.append(text)
                    starts.append(start)
                for name, value in (
                    ("id", question_id),
                    ("title", title),
                    ("context", context),
                    ("question", question),
                ):
                    columns[name].append(value)
                columns["answers"].append({"text": texts, "answer_start": starts})
    return Dataset.from_dict(columns, features=SQUAD_FEATURES)


def load_squad_json(path: str | os.PathLike, require_answers: bool = True) -> Dataset:
    """Load an official nested SQuAD v1.1 JSON file (`.json` or `.json.gz`) with the `load_dataset("squad")` schema.

    Args:
        path (`str` or `os.PathLike`): Path of the file, e.g. `dev-v1.1.json` or `data/squad_offline/train.json.gz`.
        require_answers (`bool`, *optional*, defaults to `True`): Reject questions without answers (see
            `squad_json_to_dataset`).

    Returns:
        `datasets.Dataset` with one row per question: `id`, `title`, `context`, `question`, `answers`.

    Raises:
        `FileNotFoundError`: The file does not exist.
        `SquadFormatError`: The file is not valid SQuAD v1.1; the message names the file, the record and the fix.
    """
    return squad_json_to_dataset(read_squad_json(path), require_answers=require_answers, source=os.fspath(path))


def split_by_article(
    squad: Mapping[str, Any],
    eval_fraction: float | None = None,
    n_eval_articles: int | None = None,
    seed: int = 42,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split nested SQuAD data into a training and an evaluation part with no article in both.

    Questions about the same article share a context, so splitting by question would leak evaluation contexts into
    training. The evaluation articles are drawn with `random.Random(seed)`; both parts keep the original article order.

    Args:
        squad (`Mapping[str, Any]`): Parsed official SQuAD JSON (`{"data": [...], "version": ...}`).
        eval_fraction (`float`, *optional*): Fraction of the articles to hold out, rounded to a whole number.
        n_eval_articles (`int`, *optional*): Number of articles to hold out. Pass exactly one of the two.
        seed (`int`, *optional*, defaults to 42): Seed of the draw; the same seed gives the same split.

    Returns:
        `tuple[dict, dict]`: `(train, eval)`, both in the nested format and with the other top-level keys (such as
        `"version"`) copied.
    """
    if (eval_fraction is None) == (n_eval_articles is None):
        raise ValueError("Pass exactly one of eval_fraction and n_eval_articles to split_by_article.")
    articles = squad["data"]
    if eval_fraction is not None:
        if not 0.0 < eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be between 0 and 1 (exclusive), got {eval_fraction}.")
        n_eval_articles = round(eval_fraction * len(articles))
    if not 1 <= n_eval_articles < len(articles):
        raise ValueError(
            f"Cannot hold out {n_eval_articles} of {len(articles)} articles: both parts need at least one article."
        )
    eval_indices = set(random.Random(seed).sample(range(len(articles)), n_eval_articles))
    header = {key: value for key, value in squad.items() if key != "data"}
    train = {**header, "data": [article for i, article in enumerate(articles) if i not in eval_indices]}
    held_out = {**header, "data": [article for i, article in enumerate(articles) if i in eval_indices]}
    return train, held_out
