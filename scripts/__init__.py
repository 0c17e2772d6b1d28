"""The repository's command-line scripts. A package so that the benchmarks (`benchmarks/`, run from the repository
root) import the SQuAD example as `scripts.run_squad`; each script also runs as `python scripts/NAME.py`."""
