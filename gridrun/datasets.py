"""The chapter's data sets: MNIST and Fashion-MNIST from IDX files, and scikit-learn's 8x8 digits.

`load_mnist()` / `load_fashion_mnist()` return `((x_train, y_train), (x_test, y_test))` like
`keras.datasets`: uint8 images shaped (n, 28, 28) and uint8 labels. No download happens; the IDX files
(gzipped or raw) are looked up, in order, in:

- the `path` argument: the folder itself or its `mnist/` (`fashion-mnist/`) subfolder;
- `$GRIDRUN_MNIST` (`$GRIDRUN_FASHION_MNIST`): the folder itself or that subfolder;
- `$GRIDRUN_DATA`: its `mnist/` (`fashion-mnist/`) subfolder; for MNIST also the folder itself;
- for Fashion-MNIST, /usr/share/datasets/fashion-mnist (Debian: `apt-get install dataset-fashion-mnist`).

`load_digits()` needs no files (scikit-learn ships the 1,797 8x8 digits). `load("auto")` picks
Fashion-MNIST, else MNIST, else digits, and tells which one it used (`.name`).

Loads are memoized per resolved folder and every returned array is read-only: population mode trains
many trials in threads of one process, and they all share one copy of the data. `load_prepared()` gives
what the chapter's scripts feed to `gridrun.fit`: flattened float32 features scaled to [0, 1] and
one-hot labels, memoized the same way.
"""

from __future__ import annotations

import functools
import gzip
import mmap
import os
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import GridrunError

NAMES = ("mnist", "fashion_mnist", "digits")
AUTO_ORDER = ("fashion_mnist", "mnist", "digits")
ENV_DATA = "GRIDRUN_DATA"
ENV_BY_NAME = {"mnist": "GRIDRUN_MNIST", "fashion_mnist": "GRIDRUN_FASHION_MNIST"}
SUBFOLDERS = {"mnist": ("mnist", "MNIST"), "fashion_mnist": ("fashion-mnist", "fashion_mnist")}
SYSTEM_FOLDERS = {"mnist": (), "fashion_mnist": (Path("/usr/share/datasets/fashion-mnist"),)}
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
MAX_VALUE = {"mnist": 255.0, "fashion_mnist": 255.0, "digits": 16.0}
DOWNLOAD_URL = {
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "fashion_mnist": "https://github.com/zalandoresearch/fashion-mnist/tree/master/data/fashion",
}

# One lock around every memoized load: threads that ask for the same data at the same moment wait for
# the first one instead of each reading (and holding) their own copy.
_LOCK = threading.RLock()

# IDX type codes (third byte of the magic number) -> big-endian numpy dtype
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

Split = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class Dataset(tuple):
    """`((x_train, y_train), (x_test, y_test))` that also knows its `name` and `source` (where it came from).

    It unpacks like the keras.datasets tuple; `x_train`, `y_train`, `x_test`, `y_test` and
    `num_classes` are there as attributes too.
    """

    name: str
    source: str

    def __new__(cls, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                name: str, source: str) -> Dataset:
        self = super().__new__(cls, (tuple(train), tuple(test)))
        self.name = name
        self.source = source
        return self

    def __getnewargs__(self) -> tuple[Any, ...]:  # pickling (e.g. to a Dask worker)
        return (self[0], self[1], self.name, self.source)

    x_train = property(lambda self: self[0][0])
    y_train = property(lambda self: self[0][1])
    x_test = property(lambda self: self[1][0])
    y_test = property(lambda self: self[1][1])

    @property
    def num_classes(self) -> int:
        y = self.y_train
        return int(y.shape[1]) if y.ndim == 2 else int(y.max()) + 1

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={self.x_train.shape}, test={self.x_test.shape}, "
                f"source={self.source!r})")


# --------------------------------------------------------------------------------------------------
# IDX files


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped or raw) into a read-only array of its declared type and shape.

    The header is the magic number `0 0 <type code> <ndim>` followed by ndim big-endian uint32 sizes.
    A file whose header or length does not match raises GridrunError naming the file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise GridrunError(f"cannot read IDX file {path}: {exc}. Download the file again.") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or not 1 <= raw[3] <= 4:
        raise GridrunError(
            f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'}; expected 0000 "
            "followed by a type code and the number of dimensions). Download the file again."
        )
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise GridrunError(f"{path}: IDX header is cut short ({len(raw)} bytes). Download the file again.")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise GridrunError(
            f"{path}: the IDX header declares shape {shape} ({expected} bytes of data) but the file has "
            f"{len(raw) - header} bytes of data; it is truncated or corrupt. Download the file again."
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    if dtype.itemsize > 1:
        array = array.astype(dtype.newbyteorder("="))
    array.setflags(write=False)
    return array


def _find_file(folder: Path, stem: str) -> Path | None:
    dotted = stem.replace("-idx", ".idx")  # some mirrors name them train-images.idx3-ubyte
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def _has_idx_files(folder: Path) -> bool:
    return all(_find_file(folder, stem) is not None for stem in IDX_FILES.values())


def _candidates(name: str, path: str | os.PathLike | None, *, direct: bool = True) -> list[Path]:
    """Folders to look in for `name`, in order. `direct=False` skips folders not specific to `name`."""
    subs = SUBFOLDERS[name]
    if path is not None:
        root = Path(path).expanduser()
        return [root / s for s in subs] + ([root] if direct else [])
    folders: list[Path] = []
    specific = os.environ.get(ENV_BY_NAME[name])
    if specific:
        root = Path(specific).expanduser()
        folders += [root, *(root / s for s in subs)]
    generic = os.environ.get(ENV_DATA)
    if generic:
        root = Path(generic).expanduser()
        folders += [root / s for s in subs]
        if name == "mnist" and direct:  # files right in $GRIDRUN_DATA count as MNIST
            folders.append(root)
    folders += SYSTEM_FOLDERS[name]
    return folders


def _resolve(name: str, path: str | os.PathLike | None, *, direct: bool = True) -> Path | None:
    for folder in _candidates(name, path, direct=direct):
        if _has_idx_files(folder):
            return folder.resolve()
    return None


def _missing_message(name: str, path: str | os.PathLike | None) -> str:
    looked = _candidates(name, path) or []
    where = "\n".join(f"  - {p}" for p in looked) or (
        f"  - nowhere: no path given and neither {ENV_BY_NAME[name]} nor {ENV_DATA} is set"
    )
    pretty = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}[name]
    sub = SUBFOLDERS[name][0]
    files = ", ".join(f"{s}.gz" for s in IDX_FILES.values())
    lines = [
        f"{pretty} IDX files not found. Looked for {files} (gzipped or not) in:",
        where,
        "To get them:",
    ]
    if name == "fashion_mnist":
        lines.append("  - Debian/Ubuntu: apt-get install dataset-fashion-mnist (installs /usr/share/datasets/fashion-mnist)")
    lines += [
        f"  - {'or ' if name == 'fashion_mnist' else ''}download the 4 IDX files from {DOWNLOAD_URL[name]} into a folder DIR and set "
        f"{ENV_BY_NAME[name]}=DIR, or put them in DIR/{sub}/ and set {ENV_DATA}=DIR, or pass path=DIR",
        "  - or use --dataset digits (scikit-learn's 8x8 digits, no download needed)",
    ]
    return "\n".join(lines)


@functools.cache
def _load_idx_folder(folder: Path) -> Split:
    x_train, y_train, x_test, y_test = (read_idx(_find_file(folder, stem)) for stem in IDX_FILES.values())
    for x, y, part in ((x_train, y_train, "train"), (x_test, y_test, "t10k")):
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise GridrunError(
                f"{folder}: {part} images {x.shape} and labels {y.shape} do not match (expected (n, rows, "
                "cols) images and n labels). Check that the folder holds the 4 files of one data set."
            )
    return (x_train, y_train), (x_test, y_test)


def _load_named_idx(name: str, path: str | os.PathLike | None) -> Dataset:
    folder = _resolve(name, path)
    if folder is None:
        raise GridrunError(_missing_message(name, path))
    with _LOCK:
        train, test = _load_idx_folder(folder)
    return Dataset(train, test, name, str(folder))


def load_mnist(path: str | os.PathLike | None = None) -> Dataset:
    """MNIST as `((x_train, y_train), (x_test, y_test))`, uint8, (60000, 28, 28) and (10000, 28, 28)."""
    return _load_named_idx("mnist", path)


def load_fashion_mnist(path: str | os.PathLike | None = None) -> Dataset:
    """Fashion-MNIST as `((x_train, y_train), (x_test, y_test))`, uint8, same shapes as MNIST."""
    return _load_named_idx("fashion_mnist", path)


@functools.cache
def _load_digits_split(test_size: float, seed: int) -> Split:
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x = bunch.images.astype(np.float32)
    y = bunch.target.astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, stratify=y, random_state=seed
    )
    arrays = [np.ascontiguousarray(a) for a in (x_train, y_train, x_test, y_test)]
    for a in arrays:
        a.setflags(write=False)
    return (arrays[0], arrays[1]), (arrays[2], arrays[3])


def load_digits(test_size: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits with a fixed stratified split: x float32 (n, 8, 8) in 0..16, y uint8.

    With the defaults: 1,437 training and 360 test images.
    """
    with _LOCK:
        train, test = _load_digits_split(float(test_size), int(seed))
    return Dataset(train, test, "digits", "sklearn.datasets.load_digits")


def _normalize_name(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    if key not in (*NAMES, "auto"):
        raise GridrunError(f"unknown data set {name!r}; use one of: auto, {', '.join(NAMES)}")
    return key


def resolve_name(name: str = "auto", path: str | os.PathLike | None = None) -> str:
    """The data set `load(name, path)` would use: `name` itself, or for "auto" the first one present."""
    key = _normalize_name(name)
    if key != "auto":
        return key
    if _resolve("fashion_mnist", path, direct=False) is not None:
        return "fashion_mnist"
    if _resolve("mnist", path) is not None:
        return "mnist"
    return "digits"


def load(name: str = "auto", path: str | os.PathLike | None = None) -> Dataset:
    """Load a data set by name: mnist | fashion_mnist | digits | auto.

    "auto" uses Fashion-MNIST if its files are found, else MNIST, else digits. IDX files lying directly
    in a folder that is not specific to one data set (`path` in auto mode, `$GRIDRUN_DATA`) count as
    MNIST; put Fashion-MNIST in a `fashion-mnist/` subfolder. The result's `.name` says which one it is.
    """
    key = resolve_name(name, path)
    if key == "digits":
        return load_digits()
    return _load_named_idx(key, path)


# --------------------------------------------------------------------------------------------------
# Preparation helpers


def to_categorical(y: Any, num_classes: int | None = None) -> np.ndarray:
    """One-hot encode integer labels into a float32 matrix (n, num_classes), like keras' to_categorical."""
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise GridrunError(f"to_categorical needs a 1-D array of integer labels, got shape {labels.shape}")
    if labels.size and (not np.all(np.equal(np.mod(labels, 1), 0)) or labels.min() < 0):
        raise GridrunError("to_categorical needs non-negative integer labels (0, 1, 2, ...)")
    labels = labels.astype(np.int64)
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    elif labels.size and labels.max() >= num_classes:
        raise GridrunError(
            f"label {int(labels.max())} does not fit num_classes={num_classes}; raise num_classes or omit it"
        )
    out = np.zeros((labels.shape[0], num_classes), dtype=np.float32)
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


def flatten(x: Any) -> np.ndarray:
    """Reshape (n, ...) to (n, features): 28x28 images become 784 columns, like the chapter's mnist_x."""
    array = np.asarray(x)
    return array.reshape(array.shape[0], -1)


def scale(x: Any, max_value: float | None = None) -> np.ndarray:
    """Divide by `max_value` into float32 in [0, 1]: by default 255 for uint8 images, else x.max()."""
    array = np.asarray(x)
    if max_value is None:
        max_value = 255.0 if array.dtype == np.uint8 else float(array.max()) if array.size else 1.0
    if not max_value or not np.isfinite(max_value):
        raise GridrunError(f"cannot scale by max_value={max_value!r}; pass a positive max_value")
    # one float32 array, divided into as it is converted: the same values as astype-then-divide, without
    # its two temporaries (Fashion-MNIST's 70,000 images: 1.6 s in a fresh process before, 0.1 s now)
    return np.divide(array, np.float32(max_value), out=_empty(array.shape, np.float32), dtype=np.float32)


def _empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """`np.empty`, for a large array in anonymous memory of its own (`mmap`): numpy asks the kernel for
    transparent huge pages for large arrays, and on this project's VM a fresh 188 MB array took 0.44-0.73
    s to fill that way against 0.09 s in plain pages (a data set's arrays are written once, then read)."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if size < 1 << 24:
        return np.empty(shape, dtype)
    return np.frombuffer(mmap.mmap(-1, size), dtype=dtype).reshape(shape)


def standardize(x_train: Any, x_test: Any | None = None, eps: float = 1e-7
                ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Center and scale each feature by the training mean and standard deviation (float32).

    Constant features (std 0, like MNIST's border pixels) are only centered. With `x_test`, the test set
    is transformed with the training statistics and `(x_train, x_test)` is returned.
    """
    train = np.asarray(x_train, dtype=np.float32)
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > eps, std, 1.0).astype(np.float32)
    out_train = ((train - mean) / std).astype(np.float32)
    if x_test is None:
        return out_train
    out_test = ((np.asarray(x_test, dtype=np.float32) - mean) / std).astype(np.float32)
    return out_train, out_test


@functools.lru_cache(maxsize=16)
def _prepared(name: str, folder: str | None, standardized: bool = False) -> Dataset:
    if standardized:  # from the cached plain arrays (the same cache key as load_prepared's)
        plain = _prepared(name, folder, False)
        x_train, x_test = standardize(plain.x_train, plain.x_test)
        x_train.setflags(write=False)
        x_test.setflags(write=False)
        return Dataset((x_train, plain.y_train), (x_test, plain.y_test), name, plain.source)
    if folder is None:
        raw = load_digits()
    else:
        train, test = _load_idx_folder(Path(folder))
        raw = Dataset(train, test, name, folder)
    (x_train, y_train), (x_test, y_test) = raw
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    arrays = [
        scale(flatten(x_train), MAX_VALUE[name]),
        to_categorical(y_train, num_classes),
        scale(flatten(x_test), MAX_VALUE[name]),
        to_categorical(y_test, num_classes),
    ]
    for a in arrays:
        a.setflags(write=False)
        root = _root(a)
        _PREPARED[id(root)] = root
    return Dataset((arrays[0], arrays[1]), (arrays[2], arrays[3]), name, raw.source)


# the memory of every array load_prepared made (kept with its memoized arrays, never written after):
# id -> the buffer object, so that `prepared_root` recognizes them and their read-only views
_PREPARED: dict[int, Any] = {}


def _root(array: np.ndarray) -> Any:
    """The object that owns an array's memory: the array itself, or the end of its chain of bases (a
    memoryview's exporter)."""
    root: Any = array
    while isinstance(root, np.ndarray) and root.base is not None:
        root = root.base
    return root.obj if isinstance(root, memoryview) else root


def prepared_root(array: Any) -> Any | None:
    """The buffer of `load_prepared`'s memoized arrays that `array`, a read-only view, reads (a slice
    x[:n] included), or None for any other array. Such memory never changes, so a device copy of a view
    of it stays valid (train/engine.py `on_device` keeps one across a sweep's trials)."""
    if not isinstance(array, np.ndarray) or array.flags.writeable:
        return None
    root = _root(array)
    return root if _PREPARED.get(id(root)) is root else None


def load_prepared(name: str = "auto", path: str | os.PathLike | None = None, *, standardized: bool = False) -> Dataset:
    """The chapter's inputs: x flattened to float32 in [0, 1] (n, 784 or 64), y one-hot float32 (n, 10).

    `standardized=True`: x centered and scaled per feature by the training set's mean and standard
    deviation instead (`standardize`), as the chapter's text advises for inputs.
    Memoized per data set, folder and scaling, with read-only arrays, so every trial in a process
    (a population's trial threads included) shares one copy.
    """
    key = resolve_name(name, path)
    folder = None
    if key != "digits":
        folder = _resolve(key, path)
        if folder is None:
            raise GridrunError(_missing_message(key, path))
    with _LOCK:
        return _prepared(key, None if folder is None else str(folder), bool(standardized))


def available(path: str | os.PathLike | None = None) -> dict[str, str | None]:
    """Which data sets are present: name -> folder (or a description), None when missing."""
    found: dict[str, str | None] = {}
    for name in ("mnist", "fashion_mnist"):
        folder = _resolve(name, path)
        found[name] = str(folder) if folder else None
    found["digits"] = "sklearn.datasets.load_digits"
    return found


def clear_cache() -> None:
    """Forget memoized loads (after replacing files on disk)."""
    _load_idx_folder.cache_clear()
    _load_digits_split.cache_clear()
    _prepared.cache_clear()


__all__: Sequence[str] = (
    "Dataset",
    "available",
    "clear_cache",
    "flatten",
    "load",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "load_prepared",
    "read_idx",
    "resolve_name",
    "scale",
    "standardize",
    "to_categorical",
)
