"""File output shared by the scripts: atomic writes (a reader, or a parallel run, never sees a half-written file)
and values made JSON-safe."""

from __future__ import annotations

import gzip
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Callable


def write_atomically(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call `write(temporary_path)` on a file beside `path`, then move it to `path` in one step.

    Args:
        path (`str` or `os.PathLike`): the destination; its directory must exist.
        write (`Callable[[str], None]`): writes the content to the path it is given.
    """
    path = os.fspath(path)
    descriptor, temporary = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".tmp-",
                                             suffix=Path(path).suffix)
    os.close(descriptor)
    try:
        write(temporary)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp creates 0600 files; give the usual permissions
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """`write_atomically` for a UTF-8 text file."""
    write_atomically(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))


def jsonable(obj):
    """`obj` (records, nested dicts and lists of numbers) with only JSON types: keys as strings, non-finite floats
    and other objects as their text."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    try:
        value = float(obj)  # a tensor or numpy scalar
        return value if math.isfinite(value) else str(value)
    except (TypeError, ValueError):
        return repr(obj)


def write_json_gz(squad: dict, path: str | os.PathLike) -> None:
    """Write `squad` as gzip-compressed JSON, atomically and reproducibly (no timestamp or file name in the header).

    Args:
        squad (`dict`): Nested SQuAD data.
        path (`str` or `os.PathLike`): Destination `.json.gz` file.
    """
    payload = json.dumps(squad, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def write(temporary):
        with open(temporary, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as file:
            file.write(payload)

    write_atomically(path, write)
