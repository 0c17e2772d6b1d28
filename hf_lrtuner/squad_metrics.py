"""Deprecated alias: the SQuAD metrics moved to `hf_lrtuner.squad.metrics` after hf_lrtuner 0.2 (the names are also
importable from `hf_lrtuner.squad`). Importing this module warns; it will be removed in a later release."""

import warnings

from .squad.metrics import (  # noqa: F401
    compute_squad_v1,
    exact_match_score,
    f1_score,
    load_evaluate_squad_metric,
    normalize_answer,
    squad_metrics,
)


warnings.warn(
    "hf_lrtuner.squad_metrics is deprecated and will be removed in a later release; import squad_metrics, "
    "compute_squad_v1 and the other SQuAD metric functions from hf_lrtuner.squad instead.",
    FutureWarning,
    stacklevel=2,
)
