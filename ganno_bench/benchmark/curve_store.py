"""Compact storage of a result card's per-decision curves and rates, beside its JSON.

A card's episodes carry per-decision curves (``val_loss``, ``train_loss``,
``val_accuracy``, ``reward``, ...) and per-layer rates (``lrs``): nearly all of a card's
bytes, written as 17-digit decimals. A *compact* card ``NAME.json.gz`` keeps everything
else (gzip-compressed JSON) and moves those arrays into ``NAME.curves.npz`` beside it: a
zip (LZMA) of ``.npy`` arrays, one per curve key for all episodes together, float32 where
every value of the key is exactly a float32 (the losses and accuracies the engine
measures in float32), float64 otherwise. Where it compresses better, an array is stored
byte-shuffled (byte ``k`` of every value together, as HDF5's shuffle filter does), the
index saying so. Nothing is rounded: loading gives back every value bit for bit.

The split also keeps a repository small over time: rescoring a card rewrites only its
small JSON part (scores), and the arrays file, written deterministically (fixed zip
timestamps), stays byte-identical, so version control stores it once.
"""

from __future__ import annotations

import io
import json
import lzma
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ganno_bench.benchmark.journal import atomic_target

SUFFIX = ".curves.npz"
COMPACT_SUFFIX = ".json.gz"  # a compact card's own file
FORMAT = 1
_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed zip timestamps: same arrays, same bytes


class CurveStoreError(ValueError):
    """A curves file that does not belong to its card, or is damaged."""


def store_path(card_path: Path) -> Path:
    """``NAME.curves.npz`` beside ``NAME.json.gz`` (or ``NAME.json``)."""
    name = card_path.name.removesuffix(".gz").removesuffix(".json")
    return card_path.with_name(name + SUFFIX)


def is_compact_path(path: Path) -> bool:
    return path.name.endswith(COMPACT_SUFFIX)


def _episode_key(episode: dict[str, Any]) -> list[Any]:
    return [episode["env_id"], episode["instance"], episode["seed"]]


def _exact_array(values: Sequence[Any]) -> np.ndarray:
    """The smallest dtype that holds every value exactly: int64 for integers, float32
    when each float survives a float32 round trip, else float64."""
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.int64)
    wide = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore"):  # values beyond float32 become inf: not exact
        narrow = wide.astype(np.float32)
    same = np.array_equal(narrow.astype(np.float64), wide, equal_nan=True)
    return narrow if same and not np.isnan(wide).any() else wide


def split_card(card: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The card without curves and rates, and the arrays that hold them."""
    episodes = card["episodes"]
    keys = sorted({k for e in episodes for k in e["curves"]})
    arrays: dict[str, np.ndarray] = {}
    for key in keys:
        lengths = [len(e["curves"][key]) if key in e["curves"] else -1 for e in episodes]
        flat = [v for e in episodes for v in e["curves"].get(key, ())]
        arrays[f"curves/{key}"] = _exact_array(flat)
        arrays[f"curves/{key}.lengths"] = np.asarray(lengths, dtype=np.int64)
    rows = [len(e["lrs"]) for e in episodes]
    row_lengths = [len(row) for e in episodes for row in e["lrs"]]
    arrays["lrs"] = _exact_array([v for e in episodes for row in e["lrs"] for v in row])
    arrays["lrs.rows"] = np.asarray(rows, dtype=np.int64)
    arrays["lrs.row_lengths"] = np.asarray(row_lengths, dtype=np.int64)
    slim = dict(card)
    slim["episodes"] = [
        {k: v for k, v in e.items() if k not in ("curves", "lrs")} for e in episodes
    ]
    shuffled = {}
    for name, array in list(arrays.items()):
        candidate = _shuffle(array)
        if _packed_size(candidate) < _packed_size(array):
            arrays[name], shuffled[name] = candidate, array.dtype.str
    index = {
        "format": FORMAT,
        "episodes": [_episode_key(e) for e in episodes],
        "keys": keys,
        "shuffled": shuffled,
    }
    arrays["index.json"] = np.frombuffer(json.dumps(index).encode(), dtype=np.uint8)
    return slim, arrays


def _shuffle(array: np.ndarray) -> np.ndarray:
    """Bytes of the values regrouped by position: (itemsize, n) uint8."""
    return np.ascontiguousarray(array).view(np.uint8).reshape(-1, array.itemsize).T.copy()


def _unshuffle(array: np.ndarray, dtype: str) -> np.ndarray:
    return np.ascontiguousarray(array.T).view(np.dtype(dtype)).reshape(-1)


def _packed_size(array: np.ndarray) -> int:
    return len(lzma.compress(np.ascontiguousarray(array).tobytes(), preset=6))


def write_store(arrays: dict[str, np.ndarray], path: Path) -> None:
    """Write the arrays as a deterministic zip of ``.npy`` files, atomically."""
    with atomic_target(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_LZMA) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_LZMA
            archive.writestr(info, buffer.getvalue())


def _read_store(path: Path) -> dict[str, np.ndarray]:
    try:
        with zipfile.ZipFile(path) as archive:
            return {
                name.removesuffix(".npy"): np.lib.format.read_array(
                    archive.open(name), allow_pickle=False
                )
                for name in archive.namelist()
            }
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CurveStoreError(f"{path}: not a readable curves file ({exc})") from exc


def _values(array: np.ndarray) -> list[Any]:
    return array.tolist()  # float32 -> the same Python float as the engine's float(tensor)


def merge_store(slim: dict[str, Any], path: Path) -> dict[str, Any]:
    """The full card: ``slim`` (a compact card's JSON) with the curves and rates of
    ``path`` put back into its episodes. Refuses a file of other episodes."""
    arrays = _read_store(path)
    index = json.loads(bytes(arrays["index.json"]).decode())
    for name, dtype in index.get("shuffled", {}).items():
        arrays[name] = _unshuffle(arrays[name], dtype)
    episodes = slim["episodes"]
    if index.get("format") != FORMAT:
        raise CurveStoreError(f"{path}: curves format {index.get('format')!r} is not {FORMAT}")
    if index["episodes"] != [_episode_key(e) for e in episodes]:
        raise CurveStoreError(
            f"{path} holds the curves of other episodes than its card "
            f"({len(index['episodes'])} against {len(episodes)}): restore the pair together"
        )
    curves: list[dict[str, list[Any]]] = [{} for _ in episodes]
    for key in index["keys"]:
        values = _values(arrays[f"curves/{key}"])
        start = 0
        for curve, length in zip(curves, arrays[f"curves/{key}.lengths"].tolist(), strict=True):
            if length >= 0:
                curve[key] = values[start : start + length]
                start += length
    lrs = _values(arrays["lrs"])
    row_lengths = iter(arrays["lrs.row_lengths"].tolist())
    start = 0
    full = dict(slim)
    full["episodes"] = []
    for episode, curve, rows in zip(episodes, curves, arrays["lrs.rows"].tolist(), strict=True):
        table = []
        for _ in range(rows):
            length = next(row_lengths)
            table.append(lrs[start : start + length])
            start += length
        full["episodes"].append({**episode, "curves": curve, "lrs": table})
    return full
