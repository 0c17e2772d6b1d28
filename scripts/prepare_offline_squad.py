"""Split the official SQuAD v1.1 dev set by article into the offline training and evaluation files of this repo.

The Hub is not always reachable (CI, air-gapped machines), so the repo ships a small SQuAD sample: the 48 articles of
`dev-v1.1.json` split by article into a training part and a held-out evaluation part, both in the official nested
format and gzip-compressed. The output is deterministic: same input, seed and counts give byte-identical files.

Usage:
    python scripts/prepare_offline_squad.py --source /path/to/dev-v1.1.json --output_dir data/squad_offline
"""

import argparse
import hashlib
import os
import sys

from hf_lrtuner.files import write_json_gz
from hf_lrtuner.squad import read_squad_json, split_by_article, squad_json_to_dataset


OFFICIAL_DEV_MD5 = "3e85deb501d4e538b6bc56f786231552"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="Path of the official dev-v1.1.json.")
    parser.add_argument("--output_dir", default="data/squad_offline", help="Where train.json.gz/eval.json.gz go.")
    parser.add_argument("--n_eval_articles", type=int, default=10, help="Articles held out for evaluation.")
    parser.add_argument("--seed", type=int, default=42, help="Seed of the article draw.")
    args = parser.parse_args(argv)

    with open(args.source, "rb") as file:
        md5 = hashlib.md5(file.read()).hexdigest()
    if md5 != OFFICIAL_DEV_MD5:
        print(
            f"warning: {args.source} has md5 {md5}, not the official dev-v1.1.json's {OFFICIAL_DEV_MD5}.",
            file=sys.stderr,
        )
    squad = read_squad_json(args.source)
    squad_json_to_dataset(squad, source=args.source)  # validates every record before anything is written
    train, held_out = split_by_article(squad, n_eval_articles=args.n_eval_articles, seed=args.seed)

    os.makedirs(args.output_dir, exist_ok=True)
    for name, part in (("train", train), ("eval", held_out)):
        path = os.path.join(args.output_dir, f"{name}.json.gz")
        write_json_gz(part, path)
        n_paragraphs = sum(len(article["paragraphs"]) for article in part["data"])
        n_questions = sum(len(paragraph["qas"]) for article in part["data"] for paragraph in article["paragraphs"])
        print(f"{path}: {len(part['data'])} articles, {n_paragraphs} paragraphs, {n_questions} questions")
        print("  articles: " + ", ".join(article["title"] for article in part["data"]))


if __name__ == "__main__":
    main()
