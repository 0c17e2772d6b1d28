"""Small real SQuAD records and a tiny random BERT for fast, offline question-answering tests.

The records come from the repo's `data/squad_offline` sample (never the network). The tokenizer is a WordPiece
tokenizer whose vocabulary holds the words of the given texts, so sequences stay short and no word becomes [UNK];
the model is a randomly initialised 2-layer BERT with hidden size 32.
"""

import functools
import gzip
import json
from collections import Counter
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece
from transformers import BertConfig, BertForQuestionAnswering, PreTrainedTokenizerFast

from hf_lrtuner.squad import read_squad_json, squad_json_to_dataset


OFFLINE_SQUAD_DIR = Path(__file__).resolve().parent.parent / "data" / "squad_offline"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@functools.lru_cache(maxsize=2)
def _offline_squad(part: str) -> dict:
    return read_squad_json(OFFLINE_SQUAD_DIR / f"{part}.json.gz")


def offline_squad_json(part: str = "train", num_questions: int = 20) -> dict:
    """The first `num_questions` questions of `data/squad_offline/{part}.json.gz`, in the official nested format.

    Args:
        part (`str`, *optional*, defaults to `"train"`): `"train"` or `"eval"`.
        num_questions (`int`, *optional*, defaults to 20): How many questions to keep, in file order.

    Returns:
        `dict`: `{"version": ..., "data": [...]}` holding only the articles and paragraphs of those questions.
    """
    squad = _offline_squad(part)
    articles, remaining = [], num_questions
    for article in squad["data"]:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            if remaining == 0:
                break
            qas = paragraph["qas"][:remaining]
            remaining -= len(qas)
            paragraphs.append({"context": paragraph["context"], "qas": qas})
        if paragraphs:
            articles.append({"title": article["title"], "paragraphs": paragraphs})
        if remaining == 0:
            break
    return {"version": squad.get("version", "1.1"), "data": articles}


def offline_squad_examples(part: str = "train", num_questions: int = 20):
    """`offline_squad_json(part, num_questions)` as a `datasets.Dataset` with the `load_dataset("squad")` columns."""
    return squad_json_to_dataset(offline_squad_json(part, num_questions), source=f"{part}.json.gz")


def write_squad_json(squad: dict, path) -> Path:
    """Write nested SQuAD data to `path` (gzip-compressed when it ends in `.gz`) and return the path."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as file:
        json.dump(squad, file)
    return path


def squad_texts(squad: dict) -> list[str]:
    """All contexts and questions of nested SQuAD data, e.g. to build a `tiny_wordpiece_tokenizer` vocabulary."""
    texts = []
    for article in squad["data"]:
        for paragraph in article["paragraphs"]:
            texts.append(paragraph["context"])
            texts.extend(qa["question"] for qa in paragraph["qas"])
    return texts


def tiny_wordpiece_tokenizer(texts: list[str], max_words: int = 2000) -> PreTrainedTokenizerFast:
    """An uncased fast WordPiece tokenizer, as BERT's, whose vocabulary holds the most frequent words of `texts`.

    Every character of the texts is also in the vocabulary (alone and as a `##` continuation), so rarer words
    split into pieces instead of becoming [UNK] and the offsets of every answer stay exact. Built from `tokenizers`
    parts as transformers 5.x's `BertTokenizer(vocab=...)` builds it (4.x's `BertTokenizer` needs a vocabulary file).

    Args:
        texts (`list[str]`): Texts whose words make the vocabulary.
        max_words (`int`, *optional*, defaults to 2000): Most frequent words to add as whole tokens.

    Returns:
        `PreTrainedTokenizerFast` with BERT's special tokens and `model_max_length=512`.
    """
    normalizer = normalizers.BertNormalizer(lowercase=True)  # lower case, no accents
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # Split the texts exactly as the tokenizer will: normalisation, then pre-tokenizer.
    words = Counter(
        word for text in texts for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
    )
    characters = sorted({character for word in words for character in word})
    vocabulary = SPECIAL_TOKENS + characters + [f"##{character}" for character in characters]
    known = set(vocabulary)
    vocabulary += [word for word, _ in words.most_common(max_words) if word not in known]
    ids = {token: index for index, token in enumerate(vocabulary)}
    backend = Tokenizer(WordPiece(ids, unk_token="[UNK]"))
    backend.normalizer, backend.pre_tokenizer = normalizer, pre_tokenizer
    backend.decoder = decoders.WordPiece(prefix="##")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=512, model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def tiny_bert_qa(tokenizer, seed: int = 0) -> BertForQuestionAnswering:
    """A randomly initialised 2-layer BERT for extractive QA (hidden size 32) matching `tokenizer`'s vocabulary.

    Args:
        tokenizer: The tokenizer the model reads (its length sets the vocabulary size).
        seed (`int`, *optional*, defaults to 0): Seed of the random initialisation.

    Returns:
        `BertForQuestionAnswering` in training mode.
    """
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return BertForQuestionAnswering(config)


def save_tiny_qa_model(directory, texts: list[str], seed: int = 0) -> str:
    """Save a `tiny_wordpiece_tokenizer(texts)` and a matching `tiny_bert_qa` to `directory`, e.g. for
    `run_squad.py --model_name_or_path directory`, and return the directory as a string."""
    tokenizer = tiny_wordpiece_tokenizer(texts)
    tokenizer.save_pretrained(directory)
    tiny_bert_qa(tokenizer, seed=seed).save_pretrained(directory)
    return str(directory)
