"""Reading .npz archives without pickle, with one clear error for every way a file can be bad."""

import zipfile
import zlib

import numpy as np


class NpzError(ValueError):
    """The file is not a readable .npz archive holding the required arrays; the message says why."""


def read_npz(path, required, optional=()) -> dict:
    """``{name: array}`` of the ``required`` arrays and those of ``optional`` that are present.

    FileNotFoundError when ``path`` does not exist; NpzError when it is not a zip archive
    (another format, truncated), a member is damaged, an array holds pickled objects, or a
    required array is missing.
    """
    with open(path, "rb"):  # FileNotFoundError / IsADirectoryError as they are
        pass
    if not zipfile.is_zipfile(path):
        raise NpzError("not a .npz (zip) archive: truncated, or another format")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in required if k not in f.files]
            if missing:
                raise NpzError(f"it has no array {', '.join(missing)} (it holds: {', '.join(f.files) or 'nothing'})")
            return {k: f[k] for k in (*required, *optional) if k in f.files}
    except NpzError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise NpzError(f"unreadable: {exc}") from None
