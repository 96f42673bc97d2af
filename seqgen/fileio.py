"""The one way seqgen writes a file: a temp file in the same folder, flushed and fsynced,
renamed over the target, then the folder fsynced. A reader never sees a half-written file,
a power loss leaves the old file or the new one, and any OSError on the way becomes a
``FileWriteError`` naming the path and the cause, with the temp file removed.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

from seqgen.errors import FileWriteError


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # some filesystems do not open folders; the rename itself is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _cause(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temp path beside ``path``; write it in the ``with`` body. On success the temp
    file is fsynced and renamed onto ``path``; on any exception it is removed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FileWriteError(f"cannot write {path}: {_cause(e)}") from None
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as e:
        raise FileWriteError(f"cannot write {path}: {_cause(e)}") from None
    except RuntimeError as e:
        # torch's zip writer reports a failed write (a full disk) as a RuntimeError
        if "write" in str(e).lower() or "pos" in str(e).lower():
            raise FileWriteError(f"cannot write {path}: {str(e).splitlines()[0][:120]}") from None
        raise
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_bytes(path: Path | str, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: Path | str, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: Path | str, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2) + "\n")
