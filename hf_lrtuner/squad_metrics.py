"""Removed in hf_lrtuner 0.4: the SQuAD metrics are `hf_lrtuner.squad.metrics` since 0.3 (also importable from
`hf_lrtuner.squad`). Importing this module raises an ImportError that says so."""

raise ImportError(
    "hf_lrtuner.squad_metrics was removed in hf_lrtuner 0.4: import squad_metrics, compute_squad_v1 and the other SQuAD "
    "metric functions from hf_lrtuner.squad (pip install 'hf_lrtuner[squad]'); CHANGELOG.md lists every change."
)
