"""Compact result cards (``NAME.json.gz`` + ``NAME.curves.npz``): lossless, deterministic,
and a rescore rewrites only the small JSON part."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ganno_bench
from ganno_bench.benchmark import curve_store
from ganno_bench.benchmark.cards import CardError, card_files, load_card, write_card
from ganno_bench.cli.main import main

TINY = {"decisions": 3, "inner_steps": 2}


@pytest.fixture(scope="module")
def card() -> dict:
    agent = ganno_bench.ScheduleAgent(lambda t, n: [-1.5 - 0.1 * t] * n, "decay")
    return ganno_bench.evaluate(
        agent,
        ["ganno/LayerLR-MLP-Easy-v0"],
        split="test",
        seeds=[0, 1],
        instances=[0, 1],
        overrides=TINY,
        progress=False,
    )


def same(a: dict, b: dict) -> bool:
    """Equal in every field, value types and float bits included."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_a_compact_card_round_trips_every_field(card, tmp_path):
    path = write_card(card, tmp_path / "c.json.gz")
    assert curve_store.store_path(path).exists()
    assert same(load_card(path), card)
    plain = write_card(card, tmp_path / "p.json")
    assert same(load_card(plain), card)
    assert path.stat().st_size + curve_store.store_path(path).stat().st_size < plain.stat().st_size


def test_writing_is_deterministic_and_a_rescore_leaves_the_curves_file_alone(card, tmp_path):
    path = write_card(card, tmp_path / "c.json.gz")
    store = curve_store.store_path(path)
    first = (path.read_bytes(), store.read_bytes())
    write_card(copy.deepcopy(card), path)
    assert (path.read_bytes(), store.read_bytes()) == first
    rescored = copy.deepcopy(card)
    for episode in rescored["episodes"]:
        episode["normalised_score"] = 0.5
    write_card(rescored, path)
    assert store.read_bytes() == first[1] and path.read_bytes() != first[0]
    assert same(load_card(path), rescored)


def test_a_compact_card_without_its_curves_or_with_other_curves_is_refused(card, tmp_path):
    path = write_card(card, tmp_path / "c.json.gz")
    other = copy.deepcopy(card)
    other["episodes"] = other["episodes"][1:]
    write_card(other, tmp_path / "o.json.gz")
    foreign = curve_store.store_path(tmp_path / "o.json.gz").read_bytes()
    curve_store.store_path(path).write_bytes(foreign)
    with pytest.raises(CardError, match="other episodes"):
        load_card(path)
    curve_store.store_path(path).unlink()
    with pytest.raises(CardError, match=r"c\.curves\.npz"):
        load_card(path)


def test_a_card_read_without_curves_is_the_card_less_its_curves_in_both_forms(card, tmp_path):
    """``curves=False`` (choosing among many cards) gives every other field as written,
    does not need the curves file, and still refuses what is not a result card."""
    expected = copy.deepcopy(card)
    for episode in expected["episodes"]:
        del episode["curves"], episode["lrs"]
    compact = write_card(card, tmp_path / "c.json.gz")
    curve_store.store_path(compact).unlink()  # not read
    for path in (write_card(card, tmp_path / "p.json"), compact):
        assert same(load_card(path, curves=False), expected)
    not_a_card = tmp_path / "other.json"
    not_a_card.write_text(json.dumps({**card, "kind": "something-else"}))
    with pytest.raises(CardError, match="not a ganno-bench result card"):
        load_card(not_a_card, curves=False)


def test_a_card_held_both_plain_and_compact_is_refused(card, tmp_path):
    write_card(card, tmp_path / "a.json")
    write_card(card, tmp_path / "b.json.gz")
    assert [p.name for p in card_files(tmp_path)] == ["a.json", "b.json.gz"]
    write_card(card, tmp_path / "a.json.gz")
    with pytest.raises(CardError, match="both plain and compact"):
        card_files(tmp_path)


def test_the_compact_command_converts_both_ways_losslessly(card, tmp_path, capsys):
    plain = write_card(card, tmp_path / "c.json")
    assert main(["compact", str(plain)]) == 0
    assert not plain.exists() and same(load_card(tmp_path / "c.json.gz"), card)
    assert main(["compact", "--expand", str(tmp_path / "c.json.gz")]) == 0
    assert same(load_card(plain), card) and not (tmp_path / "c.curves.npz").exists()
    assert main(["compact", "--expand", str(plain)]) == 2  # already plain: a clear error
    assert "already plain" in capsys.readouterr().err


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
narrow = st.floats(allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=60, deadline=None)
@given(
    curves=st.lists(
        st.tuples(
            st.lists(narrow, max_size=6),
            st.lists(finite, max_size=6),
            st.lists(st.integers(8, 512), max_size=6),
        ),
        min_size=1,
        max_size=4,
    ),
    lrs=st.lists(
        st.lists(st.floats(min_value=1e-8, max_value=10.0), min_size=1, max_size=3), max_size=5
    ),
)
def test_any_curves_and_rates_round_trip_bit_for_bit(card, tmp_path_factory, curves, lrs):
    """Float32-exact and arbitrary float64 values, integers, ragged rates, empty curves."""
    made = copy.deepcopy(card)
    template = made["episodes"][0]
    made["episodes"] = []
    for k, (losses, rewards, batch_sizes) in enumerate(curves):
        episode = copy.deepcopy(template)
        episode["seed"] = k
        episode["curves"] = {
            "val_loss": losses,
            "train_loss": losses,
            "val_accuracy": [],
            "reward": rewards,
            "batch_size": batch_sizes,
        }
        episode["lrs"] = lrs
        made["episodes"].append(episode)
    path = write_card(made, tmp_path_factory.mktemp("h") / "h.json.gz")
    assert same(load_card(path), made)


def test_write_atomically_replaces_whole_files_and_keeps_the_old_one_on_a_failed_write(
    tmp_path, monkeypatch
):
    from ganno_bench.benchmark.journal import write_atomically

    path = tmp_path / "card.json"
    write_atomically(path, "old\n")
    write_atomically(path, b"new bytes")
    assert path.read_bytes() == b"new bytes" and list(tmp_path.iterdir()) == [path]

    def torn(self, data):  # a kill mid-write: half the data reaches the temporary file
        with open(self, "w") as sink:
            sink.write(data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", torn)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, "a replacement that never lands")
    assert path.read_bytes() == b"new bytes"  # the finished file is untouched
    assert list(tmp_path.iterdir()) == [path]  # and the torn temporary file is gone


def test_concurrent_atomic_writes_of_one_file_never_collide(tmp_path):
    """Two writers replacing one file at once (two reports merging the same card) each
    write a temporary file of their own: neither renames the other's away mid-write, and
    the file always holds one writer's whole contents."""
    from concurrent.futures import ThreadPoolExecutor

    from ganno_bench.benchmark.journal import write_atomically

    path = tmp_path / "card.json"
    payloads = [f"writer {w} " * 20_000 for w in range(2)]

    def write_many(writer: int) -> None:
        for _ in range(100):
            write_atomically(path, payloads[writer])
            assert path.read_text() in payloads

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(write_many, range(2)))  # re-raises a writer's error
    assert path.read_text() in payloads and list(tmp_path.iterdir()) == [path]
