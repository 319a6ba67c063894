"""Sketch-RNN / QuickDraw ``.npz`` files, read without running code from them.

The published files hold arrays ``train``, ``valid`` and ``test``, each an object array of int16 stroke-3
arrays ``[n, 3]`` (``np.savez(path, train=np.array(drawings, dtype=object), ...)``). numpy stores an object
array as a pickle, and ``np.load(allow_pickle=True)`` would let such a file run any code. Here the archive is
read as a zip, each ``.npy`` header is parsed by numpy's header reader, and an object array's pickle goes
through :class:`SafeUnpickler`, which builds only numpy arrays and dtypes and refuses anything else.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy

from composer import ComposerError

SPLITS = ("train", "valid", "test")
MAX_MEMBER_BYTES = 4 << 30  # an array that would unpack to more than this is refused (a zip bomb)
# What numpy's pickle of an object array (of numeric arrays) names, under numpy 1.x and 2.x.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class Refused(pickle.UnpicklingError):
    """A pickle names something other than a numpy array or dtype."""


class SafeUnpickler(pickle.Unpickler):
    """Unpickles numpy object arrays of numeric arrays and nothing else: any other global (a function
    such as ``os.system``, any class) is refused before it is looked up."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes  # how Python 3 writes bytes in protocol 2 pickles
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise Refused(f"refused to load '{module}.{name}': only numpy arrays may be stored")

    def persistent_load(self, pid: Any) -> Any:
        raise Refused("refused a persistent reference: only numpy arrays may be stored")


def _latin1_bytes(text: str, encoding: str = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding != "latin1":
        raise Refused("refused bytes that are not latin-1 text: only numpy arrays may be stored")
    return text.encode("latin1")


@dataclass
class NpzDrawings:
    """The drawings of one file: stroke-3 float32 arrays with the split each came from, and how many
    drawings were skipped for which reason."""

    drawings: list[tuple[np.ndarray, str]] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)


def read_npz(path: str | Path) -> NpzDrawings:
    """The drawings of the ``train``, ``valid`` and ``test`` arrays of a Sketch-RNN ``.npz`` file. A file that
    is not such an archive raises ComposerError naming it; a bad drawing (not a numeric ``[n, 3]`` array
    with at least one row, or holding values that are not finite) is skipped and counted."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        reason = "not an .npz archive" if isinstance(exc, zipfile.BadZipFile) else exc.strerror or "cannot open"
        raise ComposerError(f"{path.name}: {reason}") from None
    result = NpzDrawings()
    with archive:
        members = {info.filename: info for info in archive.infolist()}
        found = [name for name in SPLITS if f"{name}.npy" in members]
        if not found:
            raise ComposerError(f"{path.name}: holds none of the arrays {', '.join(SPLITS)} of a Sketch-RNN .npz")
        for split in found:
            info = members[f"{split}.npy"]
            if info.file_size > MAX_MEMBER_BYTES:
                raise ComposerError(f"{path.name}: array '{split}' unpacks to {info.file_size} bytes, too large")
            try:
                with archive.open(info) as member:
                    array = read_npy(io.BytesIO(member.read()))
            except ComposerError as exc:
                raise ComposerError(f"{path.name}: array '{split}': {exc}") from None
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                raise ComposerError(f"{path.name}: array '{split}' cannot be read ({_first_line(exc)})") from None
            for drawing in _elements(array):
                rows, reason = checked_drawing(drawing)
                if rows is None:
                    result.skipped[reason] += 1
                else:
                    result.drawings.append((rows, split))
    if not result.drawings:
        counted = sum(result.skipped.values())
        raise ComposerError(f"{path.name}: no usable drawing in it ({counted} skipped)")
    return result


def read_npy(stream: io.BytesIO) -> np.ndarray:
    """One ``.npy`` array; an object array's pickle goes through :class:`SafeUnpickler`."""
    version = npy.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = npy.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran, dtype = npy.read_array_header_2_0(stream)
    else:
        raise ComposerError(f".npy format version {version[0]}.{version[1]} is not supported")
    if not dtype.hasobject:
        stream.seek(0)
        return npy.read_array(stream, allow_pickle=False)
    try:
        array = SafeUnpickler(stream, encoding="latin1").load()  # latin1: files pickled by Python 2
    except Refused as exc:
        raise ComposerError(str(exc)) from None
    except Exception as exc:  # a malformed pickle fails in many ways; none of them runs code
        raise ComposerError(f"its object array cannot be read ({_first_line(exc)[:80]})") from None
    if not isinstance(array, np.ndarray) or array.shape != tuple(shape):
        raise ComposerError(f"its pickle does not hold the declared array of shape {list(shape)}")
    return array


def _elements(array: np.ndarray) -> list[Any]:
    """The drawings of one array: the elements of an object array, or the rows of a numeric [k, n, 3] stack."""
    if array.dtype.hasobject:
        return list(array.ravel())
    if array.ndim == 3:
        return list(array)
    return [array]  # one drawing at most; checked like any other


def checked_drawing(value: Any) -> tuple[np.ndarray | None, str]:
    """A drawing as float32 stroke-3 rows, or None and why it is not usable."""
    if not isinstance(value, np.ndarray) or value.dtype.hasobject or value.dtype.kind not in "iuf":
        return None, "not a numeric array"
    if value.ndim != 2 or value.shape[1] != 3:
        return None, "not [n, 3] rows"
    if not len(value):
        return None, "empty"
    rows = value.astype(np.float32)
    if not np.isfinite(rows).all():
        return None, "values that are not finite"
    return rows, ""


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
