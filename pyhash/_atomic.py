"""Atomic file writes: a crash leaves the old file or the new one, never a partial file."""

import contextlib
import json
import os
import tempfile


# mkstemp creates files readable by their owner only; the renamed file gets the mode a plain
# open() would give it. The umask can only be read by setting it, so that is done once, here.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path):
    """Yield a binary file in path's folder; on success it is fsynced and renamed over path."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot write {path}: it is a folder, not a file")
    fd, tmp = tempfile.mkstemp(prefix=".pyhash-", suffix=".tmp", dir=folder)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_write`."""
    with atomic_write(path) as f:
        f.write(text.encode())


def write_json_atomic(path, data) -> None:
    """Write ``data`` as indented JSON to ``path`` through :func:`atomic_write`."""
    write_text_atomic(path, json.dumps(data, indent=2))
