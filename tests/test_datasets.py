"""gridrun.datasets: IDX parsing, file lookup, memoization, preparation helpers, digits."""

from __future__ import annotations

import gzip
import mmap
import struct
from pathlib import Path

import numpy as np
import pytest

from gridrun import datasets
from gridrun.errors import GridrunError


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch):
    """No lookups through the user's environment, no memoized loads shared between tests."""
    for var in ("GRIDRUN_DATA", "GRIDRUN_MNIST", "GRIDRUN_FASHION_MNIST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setitem(datasets.SYSTEM_FOLDERS, "fashion_mnist", ())
    datasets.clear_cache()
    yield
    datasets.clear_cache()


def idx_bytes(array: np.ndarray) -> bytes:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B, np.dtype(np.float32): 0x0D}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    data = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def make_set(folder: Path, n_train: int = 12, n_test: int = 5, gz: bool = True, seed: int = 0):
    """Write a tiny MNIST-shaped data set (4 IDX files) and return the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for key, stem in datasets.IDX_FILES.items():
        write_idx(folder / stem, arrays[key], gz)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    for array in (
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-300, 7, 1000], dtype=np.int16),
        np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2),
    ):
        path = write_idx(tmp_path / f"a{array.dtype}", array, gz)
        back = datasets.read_idx(path)
        assert back.dtype == array.dtype.newbyteorder("=")
        np.testing.assert_array_equal(back, array)
        assert not back.flags.writeable


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00\x02" + b"\x01" * 7, "truncated"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00\x02" + b"\x01" * 9, "truncated"),
        (b"PK\x03\x04 a zip file", "bad magic number"),
        (b"\x00\x00\x42\x01\x00\x00\x00\x01\x00", "bad magic number"),
        (b"\x00\x00\x08\x03\x00\x00", "cut short"),
        (b"", "bad magic number"),
        (b"\x1f\x8b\x08 not really gzip", "cannot read"),
    ],
)
def test_read_idx_rejects_corrupt_files(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(GridrunError, match=fragment) as info:
        datasets.read_idx(path)
    assert str(path) in str(info.value)
    assert "Download the file again" in str(info.value)


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_from_path(tmp_path: Path, gz: bool) -> None:
    arrays = make_set(tmp_path / "data", gz=gz)
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist(tmp_path / "data")
    np.testing.assert_array_equal(x_train, arrays["x_train"])
    np.testing.assert_array_equal(y_train, arrays["y_train"])
    np.testing.assert_array_equal(x_test, arrays["x_test"])
    np.testing.assert_array_equal(y_test, arrays["y_test"])
    assert x_train.dtype == np.uint8 and x_train.shape == (12, 28, 28)
    assert not x_train.flags.writeable and not y_test.flags.writeable


def test_loads_are_memoized_and_shared(tmp_path: Path) -> None:
    make_set(tmp_path / "mnist")
    first = datasets.load_mnist(tmp_path)
    second = datasets.load_mnist(str(tmp_path / "mnist"))  # same folder, spelled differently
    assert first.x_train is second.x_train
    with pytest.raises(ValueError):
        first.x_train[0, 0, 0] = 1
    prepared = datasets.load_prepared("mnist", tmp_path)
    assert prepared.x_train is datasets.load_prepared("mnist", tmp_path).x_train
    assert not prepared.x_train.flags.writeable and not prepared.y_train.flags.writeable


def test_load_prepared_standardized_uses_training_statistics_and_is_shared(tmp_path: Path) -> None:
    make_set(tmp_path / "mnist")
    plain = datasets.load_prepared("mnist", tmp_path)
    std = datasets.load_prepared("mnist", tmp_path, standardized=True)
    assert std.x_train is datasets.load_prepared("mnist", tmp_path, standardized=True).x_train
    assert not std.x_train.flags.writeable and std.x_train.dtype == np.float32
    assert std.y_train is plain.y_train  # one cached copy of the raw data serves both
    mean, sd = plain.x_train.mean(0), plain.x_train.std(0)
    varying = sd > 1e-6
    np.testing.assert_allclose(std.x_train.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(std.x_train.std(0)[varying], 1.0, rtol=1e-4)
    # the test set is moved with the *training* statistics, not its own
    want = (plain.x_test[:, varying] - mean[varying]) / sd[varying]
    np.testing.assert_allclose(std.x_test[:, varying], want, rtol=1e-4, atol=1e-5)


def test_env_var_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mnist = make_set(tmp_path / "root" / "mnist", seed=1)
    fashion = make_set(tmp_path / "root" / "fashion-mnist", seed=2)
    monkeypatch.setenv("GRIDRUN_DATA", str(tmp_path / "root"))
    np.testing.assert_array_equal(datasets.load_mnist().x_train, mnist["x_train"])
    np.testing.assert_array_equal(datasets.load_fashion_mnist().x_train, fashion["x_train"])
    # the data set specific variable wins over GRIDRUN_DATA
    direct = make_set(tmp_path / "direct", seed=3, gz=False)
    monkeypatch.setenv("GRIDRUN_MNIST", str(tmp_path / "direct"))
    np.testing.assert_array_equal(datasets.load_mnist().y_test, direct["y_test"])


def test_files_directly_in_gridrun_data_are_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = make_set(tmp_path)
    monkeypatch.setenv("GRIDRUN_DATA", str(tmp_path))
    loaded = datasets.load("auto")
    assert loaded.name == "mnist"
    np.testing.assert_array_equal(loaded.x_train, arrays["x_train"])
    with pytest.raises(GridrunError, match="Fashion-MNIST IDX files not found"):
        datasets.load_fashion_mnist()


def test_system_folder_for_fashion_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = make_set(tmp_path / "usr-share")
    monkeypatch.setitem(datasets.SYSTEM_FOLDERS, "fashion_mnist", (tmp_path / "usr-share",))
    loaded = datasets.load("auto")
    assert loaded.name == "fashion_mnist"
    assert loaded.source == str((tmp_path / "usr-share").resolve())
    np.testing.assert_array_equal(loaded.y_train, arrays["y_train"])


def test_missing_files_message_says_where_and_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDRUN_DATA", str(tmp_path / "nothing"))
    with pytest.raises(GridrunError) as info:
        datasets.load_fashion_mnist()
    message = str(info.value)
    assert str(tmp_path / "nothing" / "fashion-mnist") in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "GRIDRUN_DATA" in message and "t10k-labels-idx1-ubyte" in message
    with pytest.raises(GridrunError, match="neither GRIDRUN_MNIST nor GRIDRUN_DATA|nothing"):
        datasets.load_mnist()
    # three of the four files are not enough
    make_set(tmp_path / "partial")
    next((tmp_path / "partial").glob("t10k-labels*")).unlink()
    with pytest.raises(GridrunError, match=str(tmp_path / "partial")):
        datasets.load_mnist(tmp_path / "partial")


def test_mismatched_images_and_labels(tmp_path: Path) -> None:
    make_set(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3, dtype=np.uint8), gz=True)
    with pytest.raises(GridrunError, match="do not match"):
        datasets.load_mnist(tmp_path)


def test_auto_falls_back_to_digits(tmp_path: Path) -> None:
    loaded = datasets.load("auto", tmp_path)
    assert loaded.name == "digits"
    assert datasets.resolve_name("Fashion-MNIST") == "fashion_mnist"
    with pytest.raises(GridrunError, match="unknown data set 'cifar'"):
        datasets.load("cifar")


def test_load_digits_split() -> None:
    (x_train, y_train), (x_test, y_test) = datasets.load_digits()
    assert x_train.shape == (1437, 8, 8) and x_test.shape == (360, 8, 8)
    assert x_train.dtype == np.float32 and y_train.dtype == np.uint8
    assert x_train.min() == 0 and x_train.max() == 16
    assert np.all(x_train == np.round(x_train))
    # stratified: each class keeps its share in the test set
    train_share = np.bincount(y_train, minlength=10) / len(y_train)
    test_share = np.bincount(y_test, minlength=10) / len(y_test)
    assert np.abs(train_share - test_share).max() < 0.01
    # fixed split: the same every call, a different one with another seed
    np.testing.assert_array_equal(datasets.load_digits().y_test, y_test)
    assert not np.array_equal(datasets.load_digits(seed=1).y_test, y_test)


def test_load_prepared_digits() -> None:
    import pickle

    prepared = datasets.load_prepared("digits")
    copy = pickle.loads(pickle.dumps(prepared))
    assert copy.name == "digits" and copy.source == prepared.source
    np.testing.assert_array_equal(copy.y_test, prepared.y_test)
    (x_train, y_train), (x_test, y_test) = prepared
    assert prepared.name == "digits" and prepared.num_classes == 10
    assert x_train.shape == (1437, 64) and y_train.shape == (1437, 10)
    assert x_train.dtype == np.float32 and y_train.dtype == np.float32
    assert x_train.max() == 1.0 and x_test.min() == 0.0
    np.testing.assert_array_equal(y_test.argmax(axis=1), datasets.load_digits().y_test)


def test_to_categorical() -> None:
    out = datasets.to_categorical([2, 0, 1, 2])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.eye(3, dtype=np.float32)[[2, 0, 1, 2]])
    assert datasets.to_categorical(np.array([1, 0], dtype=np.uint8), 10).shape == (2, 10)
    np.testing.assert_array_equal(datasets.to_categorical([[1], [0]]), [[0, 1], [1, 0]])
    with pytest.raises(GridrunError, match="num_classes=3"):
        datasets.to_categorical([3], 3)
    with pytest.raises(GridrunError, match="non-negative integer"):
        datasets.to_categorical([0.5, 1])
    with pytest.raises(GridrunError, match="non-negative integer"):
        datasets.to_categorical([-1, 1])


def test_flatten_and_scale() -> None:
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    flat = datasets.flatten(images)
    assert flat.shape == (1, 4)
    np.testing.assert_allclose(datasets.scale(flat), [[0, 1, 0.2, 0.4]], rtol=1e-6)
    assert datasets.scale(flat).dtype == np.float32
    np.testing.assert_allclose(datasets.scale(np.array([0.0, 8.0, 16.0])), [0, 0.5, 1])
    np.testing.assert_allclose(datasets.scale(np.array([4, 8], dtype=np.uint8), max_value=16), [0.25, 0.5])
    with pytest.raises(GridrunError, match="max_value"):
        datasets.scale(np.zeros(3))


def test_standardize_uses_training_statistics() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(5.0, 3.0, (200, 3)).astype(np.float32)
    train[:, 2] = 7.0  # a constant column is only centered
    test = train[:10] + 1.0
    out_train, out_test = datasets.standardize(train, test)
    np.testing.assert_allclose(out_train[:, :2].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(out_train[:, :2].std(axis=0), 1, atol=1e-5)
    np.testing.assert_array_equal(out_train[:, 2], 0)
    expected = (test - train.mean(axis=0)) / np.where(train.std(axis=0) > 0, train.std(axis=0), 1)
    np.testing.assert_allclose(out_test, expected, rtol=1e-5, atol=1e-5)
    assert isinstance(datasets.standardize(train), np.ndarray)


def test_threads_share_one_prepared_copy(tmp_path: Path) -> None:
    import threading

    make_set(tmp_path / "mnist", n_train=2000)
    barrier = threading.Barrier(6)
    results: list[np.ndarray] = []

    def work() -> None:
        barrier.wait()
        results.append(datasets.load_prepared("mnist", tmp_path).x_train)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and all(r is results[0] for r in results)


def test_scale_of_a_large_array_is_bit_equal_to_convert_then_divide() -> None:
    """A large array is scaled into memory of its own (`_empty`, plain pages) in one pass: the very
    values of astype(float32) / max_value, a writable float32 array of the same shape."""
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (6000, 784), dtype=np.uint8)  # 18.8 MB of float32: above _empty's threshold
    out = datasets.scale(big)
    assert out.dtype == np.float32 and out.shape == big.shape and out.flags.writeable
    assert np.array_equal(out, big.astype(np.float32) / np.float32(255.0))
    root = out
    while isinstance(root, np.ndarray) and root.base is not None:
        root = root.base
    assert isinstance(getattr(root, "obj", root), mmap.mmap)  # anonymous memory of its own, not numpy's
    floats = rng.normal(0, 3, (7, 5))
    assert np.array_equal(datasets.scale(floats, 4.0), floats.astype(np.float32) / np.float32(4.0))
