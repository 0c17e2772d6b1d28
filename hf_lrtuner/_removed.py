"""Names that earlier releases had and this one removed: using one raises an error that says what replaced it (see
CHANGELOG.md), rather than a bare `AttributeError` or `TypeError`."""

from __future__ import annotations

from typing import Mapping, NoReturn

RACES = "hf_lrtuner 0.2 replaced 0.1's tuning points and probe trials by races of the LR on the run's own losses"


def removed_attribute(owner: object, name: str, removed: Mapping[str, str]) -> NoReturn:
    """Raise the `AttributeError` for `owner.name`: with what replaced it when `name` is in `removed`."""
    kind = owner.__name__ if isinstance(owner, type) else type(owner).__name__
    if name in removed:
        raise AttributeError(f"{kind}.{name} was removed: {removed[name]} (CHANGELOG.md lists every change).")
    raise AttributeError(f"{kind!r} object has no attribute {name!r}")
