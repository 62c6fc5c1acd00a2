"""Readers for standard image data sets kept in a local folder (never downloaded).

The suite must run offline and reproducibly, so it never fetches data: the user puts the
official files in a folder once and names it (``root=`` or ``$GANNO_DATA``). MNIST and
Fashion-MNIST come as four IDX files (plain or gzip); CIFAR-10 as its "python version"
folder of pickled batches. A missing file raises :class:`DataFilesNotFound`, whose message
lists the files expected and the folders searched, so the user knows what to put where.
"""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np

# IDX type codes -> big-endian numpy dtypes (the format stores everything big-endian).
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MNIST_KINDS = ("mnist", "fashion-mnist")
_MNIST_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
_CIFAR_ROW = 3 * 32 * 32
_GZIP_MAGIC = b"\x1f\x8b"
_HOW_TO_GET = (
    "ganno-bench never downloads data: obtain the official files from the data set's usual "
    "distribution site yourself beforehand."
)


class DataFilesNotFound(FileNotFoundError):
    """Raised when a local data set's files are absent; message says which files and where."""


def _describe(folders: list[Path]) -> str:
    """Folders as a readable list, flagging absent ones (the usual cause is a wrong root)."""
    return ", ".join(f"{f}" if f.is_dir() else f"{f} (no such folder)" for f in folders)


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (magic 0, 0, type code, ndim; big-endian dims; big-endian data).

    Gzip is recognised by its magic bytes rather than only by the ``.gz`` suffix, because
    browsers often decompress a download but keep its name. The result is a writable
    native-byte-order copy, since big-endian arrays trip up torch and most numerics.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except Exception as exc:  # BadGzipFile, EOFError (truncated) or zlib.error
            raise ValueError(f"{path}: corrupt gzip stream ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4]!r})")
    dtype, ndim = np.dtype(IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: the header is cut short ({len(raw)} bytes, {ndim} dims)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: dims {dims} need {expected} data bytes, the file has {len(raw) - header}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def _find(folders: list[Path], name: str) -> Path | None:
    """First ``name`` or ``name.gz`` in the folders, in search order."""
    for folder in folders:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def load_mnist_like(
    root: str | os.PathLike, kind: str = "mnist"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test); images float32 (N, 1, H, W) in [0, 1], labels int64.

    Searches ``root``, ``root/<kind>`` and ``root/<kind>/raw`` (the layouts other
    libraries leave behind), so an existing copy can be reused where it lies.
    """
    if kind not in MNIST_KINDS:
        raise ValueError(f"unknown IDX data set {kind!r}; choose one of {MNIST_KINDS}")
    root = Path(root)
    folders = [root, root / kind, root / kind / "raw"]
    found = {key: _find(folders, name) for key, name in MNIST_FILES.items()}
    missing = [MNIST_FILES[key] for key, path in found.items() if path is None]
    if missing:
        title = _MNIST_TITLES[kind]
        raise DataFilesNotFound(
            f"{title} data files not found: missing {', '.join(missing)} (plain or .gz) in "
            f"every folder searched: {_describe(folders)}. To fix: put the four files "
            f"{', '.join(MNIST_FILES.values())} (each plain or .gz) into one of these "
            "folders, or pass root=/your/folder or point the GANNO_DATA environment "
            f"variable at the folder that holds them. {_HOW_TO_GET}"
        )
    parts: list[np.ndarray] = []
    for split in ("train", "test"):
        images_path, labels_path = found[f"{split}_images"], found[f"{split}_labels"]
        assert images_path is not None and labels_path is not None  # checked above
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"{images_path}: expected (N, H, W) unsigned bytes, got {images.shape} "
                f"of {images.dtype}"
            )
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"{labels_path}: expected (N,) integer labels, got {labels.shape} of {labels.dtype}"
            )
        if len(images) != len(labels):
            raise ValueError(
                f"{kind} {split}: {len(images)} images but {len(labels)} labels "
                f"({images_path} vs {labels_path})"
            )
        if parts and images.shape[1:] != parts[0].shape[2:]:
            raise ValueError(
                f"{images_path}: test images are {images.shape[1:]}, "
                f"train images {parts[0].shape[2:]}"
            )
        parts += [images[:, None].astype(np.float32) / np.float32(255), labels.astype(np.int64)]
    return parts[0], parts[1], parts[2], parts[3]


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch as (uint8 N x 3072 rows, int64 labels), validated."""
    # pickle can run code: these are the user's own copies of the official files.
    with open(path, "rb") as handle:
        try:
            batch = pickle.load(handle, encoding="bytes")
        except Exception as exc:
            raise ValueError(f"{path} is not a CIFAR-10 python batch: {exc}") from exc
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{path} is not a CIFAR-10 python batch (needs b'data' and b'labels')")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if data.ndim != 2 or data.shape[1] != _CIFAR_ROW or len(data) != len(labels):
        raise ValueError(
            f"{path}: expected N x {_CIFAR_ROW} pixels and N labels, "
            f"got {data.shape} and {labels.shape}"
        )
    if data.dtype != np.uint8 and (
        not np.issubdtype(data.dtype, np.integer)
        or (data.size and (data.min() < 0 or data.max() > 255))
    ):
        raise ValueError(f"{path}: pixels must be bytes 0..255, got {data.dtype}")
    if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"{path}: labels must be a list of ints, got {labels.dtype}")
    return data.astype(np.uint8, copy=False), labels.astype(np.int64)


def _to_images(rows: np.ndarray) -> np.ndarray:
    """uint8 rows -> float32 (N, 3, 32, 32): each row is the R, G, B planes, row-major."""
    return rows.reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255)


def load_cifar10(root: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test); images float32 (N, 3, 32, 32) in [0, 1], labels int64.

    Looks in ``root/cifar-10-batches-py`` (where the official archive unpacks) and in
    ``root`` itself, so ``root`` may name either folder.
    """
    root = Path(root)
    folders = [root / CIFAR_FOLDER, root]
    complete = [f for f in folders if all((f / name).is_file() for name in CIFAR_FILES)]
    if not complete:
        # Report against the folder that holds most of the set: that is where the user
        # was putting it, so its gaps are the useful ones.
        best = max(folders, key=lambda f: sum((f / n).is_file() for n in CIFAR_FILES))
        missing = [n for n in CIFAR_FILES if not (best / n).is_file()]
        archive = root / "cifar-10-python.tar.gz"
        hint = f" {archive} is there but still packed: extract it." if archive.is_file() else ""
        raise DataFilesNotFound(
            f"CIFAR-10 data files not found: missing {', '.join(missing)} in {best}. "
            f"Searched: {_describe(folders)}.{hint} To fix: unpack the official CIFAR-10 "
            f'"python version" archive (cifar-10-python.tar.gz) into {root}, so that '
            f"{root / CIFAR_FOLDER} holds {', '.join(CIFAR_FILES)}, or pass "
            "root=/your/folder or point the GANNO_DATA environment variable at the folder "
            f"that holds them. {_HOW_TO_GET}"
        )
    folder = complete[0]
    train = [_read_cifar_batch(folder / name) for name in CIFAR_FILES[:-1]]
    test_rows, y_test = _read_cifar_batch(folder / CIFAR_FILES[-1])
    # Concatenate the bytes first: converting per batch would double the float peak.
    x_train = _to_images(np.concatenate([rows for rows, _ in train]))
    y_train = np.concatenate([labels for _, labels in train])
    return x_train, y_train, _to_images(test_rows), y_test
