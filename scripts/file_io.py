"""Atomic file writes for the scripts: a reader (or a parallel run) never sees a half-written file."""

from __future__ import annotations

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
