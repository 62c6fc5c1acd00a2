"""Local-file readers on small files written by hand in the real IDX and CIFAR-10 formats."""

from __future__ import annotations

import gzip
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from ganno_bench.data.local_files import (
    DataFilesNotFound,
    load_cifar10,
    load_mnist_like,
    read_idx,
)

IDX_CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


# --- writers for the real formats ------------------------------------------------------


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """IDX by hand: 0, 0, type code, ndim, big-endian uint32 dims, big-endian data."""
    header = struct.pack(">BBBB", 0, 0, code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.asarray(array).astype(IDX_CODES[code]).tobytes()


def write_idx(path: Path, array: np.ndarray, code: int = 0x08) -> Path:
    payload = idx_bytes(array, code)
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


def write_mnist(
    folder: Path, *, n_train=12, n_test=5, height=5, width=7, gz=False, seed=0
) -> dict[str, np.ndarray]:
    """The four standard files; non-square images catch hard-coded sizes and transposes."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        TRAIN_IMAGES: rng.integers(0, 256, (n_train, height, width)).astype(np.uint8),
        TRAIN_LABELS: (np.arange(n_train) * 3) % 10,
        TEST_IMAGES: rng.integers(0, 256, (n_test, height, width)).astype(np.uint8),
        TEST_LABELS: (np.arange(n_test) * 7) % 10,
    }
    arrays[TRAIN_IMAGES][0, 0, 0], arrays[TRAIN_IMAGES][0, 0, 1] = 0, 255
    for name, array in arrays.items():
        write_idx(folder / (name + (".gz" if gz else "")), array)
    return arrays


def write_cifar(folder: Path, rows=3, test_rows=2, label_offset=0) -> dict[str, tuple]:
    """All six python-version batches (protocol 2, bytes keys, as the official files)."""
    rng = np.random.default_rng(label_offset)
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for i, name in enumerate([*CIFAR_BATCHES, "test_batch"]):
        n = test_rows if name == "test_batch" else rows
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        # labels differ per batch, so batch order and alignment are checked
        labels = [(label_offset + 2 * i + r) % 10 for r in range(n)]
        write_batch(
            folder / name, {b"batch_label": name.encode(), b"labels": labels, b"data": data}
        )
        batches[name] = (data, labels)
    return batches


def write_batch(path: Path, batch: object) -> None:
    with open(path, "wb") as handle:
        pickle.dump(batch, handle, protocol=2)


def train_labels(batches: dict[str, tuple]) -> list[int]:
    """The five training batches' labels in file order, as the loader must concatenate them."""
    return [label for name in CIFAR_BATCHES for label in batches[name][1]]


def missing_part(message: str) -> str:
    """The file list between 'missing' and the folders, to check only absent files are named."""
    return message.split("missing", 1)[1].split(" in ", 1)[0]


# --- read_idx ---------------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(IDX_CODES))
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trips_every_type_big_endian(tmp_path, code, suffix):
    # values whose bytes differ when swapped, so a little-endian read cannot pass
    values = {
        0x08: np.array([[1, 2, 255], [128, 0, 7]]),
        0x09: np.array([[-128, -1, 127], [3, 0, -5]]),
        0x0B: np.array([[258, -300, 32767], [-32768, 1, 0]]),
        0x0C: np.array([[65536 + 3, -70000, 2**31 - 1], [-(2**31), 1, 0]]),
        0x0D: np.array([[1.5, -2.25, 1e30], [3.0, -0.0, 1e-3]]),
        0x0E: np.array([[1.5, -2.25, 1e300], [3.0, np.pi, 1e-3]]),
    }[code]
    path = write_idx(tmp_path / f"values{suffix}", values, code)
    out = read_idx(path)
    assert out.shape == (2, 3)
    assert out.dtype == np.dtype(IDX_CODES[code]).newbyteorder("=")
    np.testing.assert_array_equal(out, values.astype(IDX_CODES[code]))
    assert out.dtype.isnative and out.flags.writeable


def test_read_idx_reads_three_dims_in_row_major_order(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    out = read_idx(write_idx(tmp_path / "images.gz", images))
    np.testing.assert_array_equal(out, images)
    assert out[1, 2, 0] == 20  # image 1, row 2, column 0


def test_read_idx_accepts_gzip_content_under_a_plain_name(tmp_path):
    # browsers often unpack nothing but drop the .gz, or the reverse
    path = tmp_path / "labels"
    path.write_bytes(gzip.compress(idx_bytes(np.array([4, 2]))))
    np.testing.assert_array_equal(read_idx(path), [4, 2])


@pytest.mark.parametrize(
    "payload",
    [
        b"\x01\x02\x08\x01" + b"\x00\x00\x00\x00",  # first bytes not zero
        b"\x00\x00\x0a\x01" + b"\x00\x00\x00\x00",  # unknown type code
        b"\x00\x00",  # shorter than a magic number
        b"",
    ],
    ids=["nonzero-lead", "bad-type-code", "short", "empty"],
)
def test_read_idx_bad_magic_raises_naming_the_file(tmp_path, payload):
    path = tmp_path / "bad-magic-file"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match="bad-magic-file"):
        read_idx(path)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_truncated_payload_raises_naming_the_file(tmp_path, suffix):
    full = idx_bytes(np.zeros((4, 3, 3)))
    path = tmp_path / f"cut-images{suffix}"
    cut = full[:-5]
    path.write_bytes(gzip.compress(cut) if suffix else cut)
    with pytest.raises(ValueError, match=r"cut-images.*36.*31"):
        read_idx(path)


def test_read_idx_trailing_bytes_and_cut_header_raise(tmp_path):
    extra = tmp_path / "extra"
    extra.write_bytes(idx_bytes(np.zeros(3)) + b"\x00")
    with pytest.raises(ValueError, match="extra"):
        read_idx(extra)
    header = tmp_path / "header"
    header.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">I", 5))  # 3 dims, 1 given
    with pytest.raises(ValueError, match="header"):
        read_idx(header)


def test_read_idx_corrupt_gzip_raises_naming_the_file(tmp_path):
    path = tmp_path / "broken.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.arange(100)))[:-12])
    with pytest.raises(ValueError, match=r"broken\.gz"):
        read_idx(path)


# --- load_mnist_like --------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_shapes_dtypes_scaling_and_exact_round_trip(tmp_path, gz):
    arrays = write_mnist(tmp_path, gz=gz)
    x_train, y_train, x_test, y_test = load_mnist_like(tmp_path)
    assert x_train.shape == (12, 1, 5, 7) and x_test.shape == (5, 1, 5, 7)
    assert x_train.dtype == x_test.dtype == np.float32
    assert y_train.dtype == y_test.dtype == np.int64
    assert x_train[0, 0, 0, 0] == 0.0 and x_train[0, 0, 0, 1] == 1.0
    assert x_train.min() >= 0.0 and x_train.max() <= 1.0
    # every pixel comes back at its (row, column), scaled by 1/255
    np.testing.assert_array_equal(np.rint(x_train[:, 0] * 255), arrays[TRAIN_IMAGES])
    np.testing.assert_array_equal(np.rint(x_test[:, 0] * 255), arrays[TEST_IMAGES])
    assert round(float(x_train[3, 0, 4, 6]) * 255) == arrays[TRAIN_IMAGES][3, 4, 6]
    np.testing.assert_array_equal(y_train, arrays[TRAIN_LABELS])
    np.testing.assert_array_equal(y_test, arrays[TEST_LABELS])


def test_mnist_accepts_a_mix_of_plain_and_gzip_files_and_a_str_root(tmp_path):
    arrays = write_mnist(tmp_path)
    (tmp_path / TEST_IMAGES).unlink()
    write_idx(tmp_path / f"{TEST_IMAGES}.gz", arrays[TEST_IMAGES])
    _, _, x_test, _ = load_mnist_like(str(tmp_path))
    np.testing.assert_array_equal(np.rint(x_test[:, 0] * 255), arrays[TEST_IMAGES])


@pytest.mark.parametrize(
    ("kind", "subfolder"),
    [
        ("mnist", "."),
        ("mnist", "mnist"),
        ("mnist", "mnist/raw"),
        ("fashion-mnist", "fashion-mnist"),
        ("fashion-mnist", "fashion-mnist/raw"),
    ],
)
def test_mnist_like_found_in_the_kind_subfolders(tmp_path, kind, subfolder):
    arrays = write_mnist(tmp_path / subfolder, n_train=9, gz=subfolder.endswith("raw"))
    x_train, y_train, *_ = load_mnist_like(tmp_path, kind=kind)
    assert x_train.shape == (9, 1, 5, 7)
    np.testing.assert_array_equal(y_train, arrays[TRAIN_LABELS])


def test_mnist_does_not_pick_up_the_other_kinds_folder(tmp_path):
    write_mnist(tmp_path / "fashion-mnist")
    with pytest.raises(DataFilesNotFound):
        load_mnist_like(tmp_path, kind="mnist")


def test_missing_mnist_file_names_the_file_the_folders_and_the_fix(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / TEST_LABELS).unlink()
    with pytest.raises(DataFilesNotFound) as info:
        load_mnist_like(tmp_path)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert "MNIST" in message
    assert missing_part(message).split() == [TEST_LABELS, "(plain", "or", ".gz)"]
    for name in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS):
        assert name in message  # the full list of expected files
    for folder in (tmp_path, tmp_path / "mnist", tmp_path / "mnist" / "raw"):
        assert str(folder) in message
    assert "root=" in message and "GANNO_DATA" in message


def test_missing_fashion_mnist_in_an_absent_root_lists_all_four(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DataFilesNotFound) as info:
        load_mnist_like(root, kind="fashion-mnist")
    message = str(info.value)
    assert "Fashion-MNIST" in message
    listed = missing_part(message)
    assert all(name in listed for name in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS))
    assert str(root / "fashion-mnist" / "raw") in message
    assert "no such folder" in message


@pytest.mark.parametrize("split", ["train", "test"])
def test_label_and_image_count_mismatch_raises(tmp_path, split):
    write_mnist(tmp_path)
    labels_name, n = (TRAIN_LABELS, 12) if split == "train" else (TEST_LABELS, 5)
    write_idx(tmp_path / labels_name, np.arange(n - 1) % 10)
    with pytest.raises(ValueError, match=rf"{split}: {n} images but {n - 1} labels"):
        load_mnist_like(tmp_path)


def test_corrupt_mnist_file_raises_naming_it(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / TRAIN_IMAGES
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match=TRAIN_IMAGES):
        load_mnist_like(tmp_path)


def test_mnist_rejects_images_that_are_not_bytes_or_of_another_size(tmp_path):
    arrays = write_mnist(tmp_path)
    write_idx(tmp_path / TRAIN_IMAGES, arrays[TRAIN_IMAGES], code=0x0D)  # float images
    with pytest.raises(ValueError, match=TRAIN_IMAGES):
        load_mnist_like(tmp_path)
    write_idx(tmp_path / TRAIN_IMAGES, arrays[TRAIN_IMAGES])
    write_idx(tmp_path / TEST_IMAGES, np.zeros((5, 7, 5), np.uint8))  # transposed size
    with pytest.raises(ValueError, match=TEST_IMAGES):
        load_mnist_like(tmp_path)


def test_unknown_kind_raises_value_error_listing_the_kinds(tmp_path):
    write_mnist(tmp_path)
    with pytest.raises(ValueError) as info:
        load_mnist_like(tmp_path, kind="kmnist")
    assert not isinstance(info.value, FileNotFoundError)
    assert "kmnist" in str(info.value)
    assert "'mnist'" in str(info.value) and "'fashion-mnist'" in str(info.value)


# --- load_cifar10 -----------------------------------------------------------------------


def test_cifar_shapes_dtypes_scaling_and_batch_order(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-py", rows=3, test_rows=2)
    x_train, y_train, x_test, y_test = load_cifar10(tmp_path)
    assert x_train.shape == (15, 3, 32, 32) and x_test.shape == (2, 3, 32, 32)
    assert x_train.dtype == x_test.dtype == np.float32
    assert y_train.dtype == y_test.dtype == np.int64
    assert x_train.min() >= 0.0 and x_train.max() <= 1.0
    assert y_train.tolist() == train_labels(batches)
    assert y_test.tolist() == batches["test_batch"][1]
    # image 1 of data_batch_2 is training image 3 + 1; check pixels by the documented layout
    data = batches["data_batch_2"][0]
    for c, h, w in [(0, 0, 0), (1, 3, 4), (2, 31, 0), (2, 5, 30), (0, 17, 29)]:
        assert round(float(x_train[4, c, h, w]) * 255) == data[1, c * 1024 + h * 32 + w]
    np.testing.assert_array_equal(
        np.rint(x_test[1] * 255).ravel(), batches["test_batch"][0][1].astype(np.float32)
    )


def test_cifar_single_marked_pixel_lands_at_channel_row_column(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    data = np.zeros((2, 3072), np.uint8)
    data[1, 2 * 1024 + 5 * 32 + 30] = 255  # blue, row 5, column 30
    data[0, 1 * 1024 + 0 * 32 + 1] = 51  # green, row 0, column 1
    write_batch(folder / "test_batch", {b"data": data, b"labels": [3, 8]})
    _, _, x_test, y_test = load_cifar10(tmp_path)
    assert np.argwhere(x_test[1] > 0).tolist() == [[2, 5, 30]]
    assert x_test[1, 2, 5, 30] == 1.0
    assert np.argwhere(x_test[0] > 0).tolist() == [[1, 0, 1]]
    assert x_test[0, 1, 0, 1] == pytest.approx(0.2)
    assert y_test.tolist() == [3, 8]


def test_cifar_found_in_root_itself_and_subfolder_preferred(tmp_path):
    direct = write_cifar(tmp_path, label_offset=0)
    _, y_train, _, _ = load_cifar10(tmp_path)
    assert y_train.tolist() == train_labels(direct)
    nested = write_cifar(tmp_path / "cifar-10-batches-py", label_offset=5)
    _, y_train, _, y_test = load_cifar10(tmp_path)
    assert y_train.tolist() == train_labels(nested)
    assert y_test.tolist() == nested["test_batch"][1]


def test_missing_cifar_batch_names_it_and_the_folders_searched(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataFilesNotFound) as info:
        load_cifar10(tmp_path)
    message = str(info.value)
    assert "CIFAR-10" in message
    assert missing_part(message).strip() == "data_batch_3"
    assert f"Searched: {folder}, {tmp_path}." in message
    assert "root=" in message and "GANNO_DATA" in message


def test_missing_cifar_in_an_empty_root_lists_all_six_and_hints_at_the_archive(tmp_path):
    with pytest.raises(DataFilesNotFound) as info:
        load_cifar10(tmp_path)
    listed = missing_part(str(info.value))
    assert re.findall(r"data_batch_\d|test_batch", listed) == [*CIFAR_BATCHES, "test_batch"]
    assert "extract" not in str(info.value)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"not unpacked")
    with pytest.raises(DataFilesNotFound, match="extract"):
        load_cifar10(tmp_path)


@pytest.mark.parametrize(
    "batch",
    [
        {b"data": np.zeros((2, 3072), np.uint8)},  # no labels
        {b"labels": [0, 1]},  # no data
        {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]},  # str keys
        {b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]},  # one channel only
        {b"data": np.zeros((2, 32, 32, 3), np.uint8), b"labels": [0, 1]},  # not flat rows
        {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1, 2]},  # count mismatch
        {b"data": np.full((2, 3072), 300), b"labels": [0, 1]},  # not bytes
        {b"data": np.zeros((2, 3072), np.uint8), b"labels": ["cat", "dog"]},  # not ints
        [np.zeros((2, 3072), np.uint8), [0, 1]],  # not a dict
    ],
    ids=[
        "no-labels",
        "no-data",
        "str-keys",
        "short-rows",
        "hwc",
        "count",
        "range",
        "str-labels",
        "list",
    ],
)
def test_malformed_cifar_batch_raises_naming_the_file(tmp_path, batch):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    write_batch(folder / "data_batch_4", batch)
    with pytest.raises(ValueError, match="data_batch_4"):
        load_cifar10(tmp_path)


def test_cifar_file_that_is_not_a_pickle_raises_naming_it(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    (folder / "test_batch").write_bytes(b"this is no pickle")
    with pytest.raises(ValueError, match="test_batch"):
        load_cifar10(tmp_path)
