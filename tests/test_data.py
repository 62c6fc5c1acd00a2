"""Data sources, the train/val/test split, standardisation and corruption."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from ganno_bench.data import DATA_SOURCES, ArrayDataset, Corruption, load_dataset
from ganno_bench.data.dataset import assemble_given_test, split_arrays

PARTS = ("train", "val", "test")


def _parts(data: ArrayDataset) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (data.x_train.numpy(), data.y_train.numpy()),
        (data.x_val.numpy(), data.y_val.numpy()),
        (data.x_test.numpy(), data.y_test.numpy()),
    ]


def _synthetic(**options) -> ArrayDataset:
    """The synthetic source called directly, bypassing the loader cache."""
    options = {"samples": 300, "features": 8, "informative": 4, "classes": 3, **options}
    return DATA_SOURCES["synthetic"](0, Corruption(), **options)


def _with_ids(n: int, image: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs whose first feature (first channel) is the sample's index, plus labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(4, size=n)
    if image:
        x = rng.normal(3.0, 5.0, size=(n, 2, 3, 3))
        x[:, 0] = np.arange(n)[:, None, None]
    else:
        x = rng.normal(size=(n, 3)) * [1.0, 10.0, 0.1] + [0.0, -4.0, 2.0]
        x[:, 0] = np.arange(n)
    return x, y


def _recover_ids(data: ArrayDataset) -> list[np.ndarray]:
    """Each part's original indices: standardisation is one increasing map for all parts."""
    first = [xp.reshape(len(xp), -1)[:, 0] for xp, _ in _parts(data)]
    ids = np.argsort(np.argsort(np.concatenate(first), kind="stable"), kind="stable")
    assert len(np.unique(np.concatenate(first))) == len(ids)
    return np.split(ids, np.cumsum([len(f) for f in first])[:-1])


# -- digits -------------------------------------------------------------------------------


@pytest.mark.parametrize("image", [True, False])
def test_digits_split_sizes_shapes_and_partition(image):
    data = load_dataset("digits", image=image)
    bunch = load_digits()
    assert data.name == "digits" and data.num_classes == 10
    assert data.sizes() == {"train": 1078, "val": 359, "test": 360}  # round(.6n), round(.2n)
    assert data.input_shape == ((1, 8, 8) if image else (64,))
    for x, y in _parts(data):
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.shape[1:] == data.input_shape
    # The standardisation is one injective map per feature shared by all parts, and the
    # 1,797 digits are pairwise distinct: every part row is a different original sample.
    rows = np.concatenate([x.reshape(len(x), -1) for x, _ in _parts(data)])
    assert len(np.unique(bunch.data, axis=0)) == 1797
    assert len(np.unique(rows, axis=0)) == 1797
    labels = np.concatenate([y for _, y in _parts(data)])
    np.testing.assert_array_equal(np.bincount(labels), np.bincount(bunch.target))


def test_digits_are_standardised_with_train_statistics():
    flat = load_dataset("digits", image=False)
    x = flat.x_train.numpy().astype(np.float64)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-6)
    std = x.std(axis=0)
    constant = std < 1e-6
    assert 0 < constant.sum() < 64  # digits has a few always-blank pixels in train
    np.testing.assert_allclose(std[~constant], 1.0, rtol=1e-5)
    np.testing.assert_array_equal(x[:, constant], 0.0)  # (v - mean) / 1 for a constant
    # The other parts are not re-centred on their own statistics.
    assert np.abs(flat.x_val.numpy().mean(axis=0)).max() > 0.05

    image = load_dataset("digits", image=True)
    x = image.x_train.numpy().astype(np.float64)
    assert abs(x.mean()) < 1e-6 and x.std() == pytest.approx(1.0, rel=1e-5)
    # Per channel, not per pixel: individual pixels keep their own means.
    assert np.abs(x.mean(axis=0)).max() > 0.5


@pytest.mark.parametrize("image", [False, True])
def test_split_arrays_uses_train_statistics_and_keeps_labels_aligned(image):
    x, y = _with_ids(50, image)
    data = split_arrays("ids", x, y, 4, fractions=(0.5, 0.3, 0.2), split_seed=3)
    assert data.sizes() == {"train": 25, "val": 15, "test": 10}
    ids = _recover_ids(data)
    np.testing.assert_array_equal(np.sort(np.concatenate(ids)), np.arange(50))
    axes = (0, 2, 3) if image else (0,)
    mean = x[ids[0]].mean(axis=axes, keepdims=True)
    std = x[ids[0]].std(axis=axes, keepdims=True)
    for (xp, yp), part_ids in zip(_parts(data), ids, strict=True):
        np.testing.assert_allclose(xp, (x[part_ids] - mean) / std, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(yp, y[part_ids])
    same = split_arrays("ids", x, y, 4, fractions=(0.5, 0.3, 0.2), split_seed=3)
    other = split_arrays("ids", x, y, 4, fractions=(0.5, 0.3, 0.2), split_seed=4)
    assert torch.equal(same.x_train, data.x_train)
    assert not np.array_equal(_recover_ids(other)[0], ids[0])


def test_split_arrays_max_samples_uses_a_subset():
    x, y = _with_ids(50, image=False)
    data = split_arrays("ids", x, y, 4, max_samples=20)
    assert data.sizes() == {"train": 12, "val": 4, "test": 4}
    ids = _recover_ids(data)
    assert len(set(np.concatenate(ids))) == 20


def test_assemble_given_test_keeps_the_official_test_set():
    x, y = _with_ids(40, image=False)
    x_test, y_test = _with_ids(10, image=False, seed=1)
    x_test[:, 0] += 100  # ids 100..109: distinguishable from train/val ids
    data = assemble_given_test("given", x, y, x_test, y_test, 4, val_fraction=0.25)
    assert data.sizes() == {"train": 30, "val": 10, "test": 10}
    ranks = np.concatenate(_recover_ids(data))
    np.testing.assert_array_equal(np.sort(ranks[:40]), np.arange(40))  # train + val
    assert (ranks[40:] >= 40).all()  # the test part is exactly the given test samples
    np.testing.assert_array_equal(np.sort(data.y_test.numpy()), np.sort(y_test))


# -- corruption ---------------------------------------------------------------------------


def test_label_noise_flips_the_requested_fraction_of_train_labels_only():
    clean = load_dataset("digits", split_seed=2)
    noisy = load_dataset("digits", split_seed=2, label_noise=0.3)
    for (xc, yc), (xn, yn), part in zip(_parts(clean), _parts(noisy), PARTS, strict=True):
        np.testing.assert_array_equal(xn, xc)  # same split, inputs untouched
        if part != "train":
            np.testing.assert_array_equal(yn, yc)
    flipped = noisy.y_train.numpy() != clean.y_train.numpy()
    n = len(flipped)
    assert abs(flipped.mean() - 0.3) < 5 * np.sqrt(0.3 * 0.7 / n)
    assert ((noisy.y_train >= 0) & (noisy.y_train < 10)).all()


@pytest.mark.parametrize(("classes", "rate"), [(2, 0.4), (4, 0.5)])
def test_flipped_labels_always_move_to_a_uniformly_drawn_other_class(classes, rate):
    """With two classes a 'uniform over all classes' flip would change only rate/2 labels."""
    n = 20_000
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(n, 2)), rng.integers(classes, size=n)
    fractions = (0.98, 0.01, 0.01)
    clean = split_arrays("c", x, y, classes, fractions=fractions)
    noisy = split_arrays(
        "c", x, y, classes, fractions=fractions, corruption=Corruption(label_noise=rate)
    )
    before, after = clean.y_train.numpy(), noisy.y_train.numpy()
    changed = after != before
    assert abs(changed.mean() - rate) < 5 * np.sqrt(rate * (1 - rate) / len(before))
    shifts = np.bincount((after[changed] - before[changed]) % classes, minlength=classes)
    assert shifts[0] == 0
    expected = changed.sum() / (classes - 1)
    np.testing.assert_allclose(shifts[1:], expected, rtol=5 / np.sqrt(expected))


def test_input_noise_perturbs_every_input_but_no_label():
    clean = load_dataset("digits", split_seed=1, image=False)
    noisy = load_dataset("digits", split_seed=1, image=False, input_noise=0.5)
    for (xc, yc), (xn, yn) in zip(_parts(clean), _parts(noisy), strict=True):
        np.testing.assert_array_equal(yn, yc)
        delta = (xn - xc).astype(np.float64)
        assert (delta != 0).all()
        assert abs(delta.mean()) < 5 * 0.5 / np.sqrt(delta.size)
        assert delta.std() == pytest.approx(0.5, rel=5 / np.sqrt(2 * delta.size))


def test_corruption_is_fixed_by_the_split_seed():
    x, y = _with_ids(200, image=False)
    corruption = Corruption(label_noise=0.3, input_noise=0.2)
    a = split_arrays("n", x, y, 4, corruption=corruption, split_seed=9)
    b = split_arrays("n", x, y, 4, corruption=corruption, split_seed=9)
    for (xa, ya), (xb, yb) in zip(_parts(a), _parts(b), strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


@pytest.mark.parametrize(
    "kwargs", [{"label_noise": 1.0}, {"label_noise": -0.1}, {"input_noise": -0.5}]
)
def test_corruption_rejects_out_of_range_values(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        Corruption(**kwargs)


def test_corruption_accepts_its_boundaries():
    assert Corruption(label_noise=0.0, input_noise=0.0) == Corruption()
    assert Corruption(label_noise=0.99).label_noise == 0.99


# -- split errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_x", "n_y", "fractions", "match"),
    [
        (30, 29, (0.6, 0.2, 0.2), "30 inputs but 29 labels"),
        (30, 30, (0.6, 0.2, 0.3), "sum to 1"),
        (30, 30, (0.8, 0.2, 0.0), "positive"),
        (30, 30, (1.2, -0.1, -0.1), "positive"),
        (2, 2, (0.6, 0.2, 0.2), "too few"),
    ],
)
def test_split_arrays_rejects_bad_input(n_x, n_y, fractions, match):
    x, y = np.zeros((n_x, 3)), np.zeros(n_y, dtype=np.int64)
    with pytest.raises(ValueError, match=match):
        split_arrays("bad", x, y, 2, fractions=fractions)


# -- sources ------------------------------------------------------------------------------


def test_synthetic_source_is_a_function_of_its_seed():
    a, b, other = _synthetic(seed=1), _synthetic(seed=1), _synthetic(seed=2)
    for (xa, ya), (xb, yb) in zip(_parts(a), _parts(b), strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a.x_train.numpy(), other.x_train.numpy())
    assert a.name == "synthetic-1" and other.name == "synthetic-2"
    assert a.input_shape == (8,) and a.num_classes == 3
    assert sum(a.sizes().values()) == 300
    assert set(np.unique(a.y_train.numpy())) == {0, 1, 2}


def test_synthetic_image_side_lays_features_out_as_a_square_image():
    data = _synthetic(seed=0, image_side=5)
    assert data.input_shape == (1, 5, 5)
    # Per-channel standardisation over the whole image.
    x = data.x_train.numpy().astype(np.float64)
    assert abs(x.mean()) < 1e-6 and x.std() == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize(
    ("name", "suggestion"), [("digit", "'digits'"), ("fashion_mnist", "'fashion-mnist'")]
)
def test_unknown_source_suggests_the_closest_name(name, suggestion):
    with pytest.raises(ValueError, match=f"Did you mean {suggestion}"):
        load_dataset(name)


def test_unknown_source_without_a_close_match_lists_the_known_ones():
    with pytest.raises(ValueError, match="Unknown data source") as info:
        load_dataset("qqqqqqq")
    message = str(info.value)
    assert "Did you mean" not in message
    assert all(repr(source) in message for source in DATA_SOURCES)


def test_loader_caches_per_source_and_options():
    options = {"samples": 120, "features": 6, "informative": 3, "classes": 3, "seed": 4}
    first = load_dataset("synthetic", **options)
    assert load_dataset("synthetic", **options) is first
    reordered = dict(reversed(list(options.items())))
    assert load_dataset("synthetic", **reordered) is first
    different = [
        load_dataset("synthetic", **{**options, "seed": 5}),
        load_dataset("synthetic", **options, split_seed=1),
        load_dataset("synthetic", **options, label_noise=0.1),
        load_dataset("synthetic", **options, input_noise=0.1),
    ]
    for data in different:
        assert data is not first
        assert not (
            torch.equal(data.x_train, first.x_train) and torch.equal(data.y_train, first.y_train)
        )


def test_sources_producing_non_finite_inputs_are_rejected(monkeypatch):
    def broken(split_seed, corruption, **_):
        clean = _synthetic(seed=0)
        x_val = clean.x_val.clone()
        x_val[3, 1] = float("nan")
        return ArrayDataset(
            "broken",
            clean.x_train,
            clean.y_train,
            x_val,
            clean.y_val,
            clean.x_test,
            clean.y_test,
            clean.num_classes,
        )

    monkeypatch.setitem(DATA_SOURCES, "broken", broken)
    with pytest.raises(ValueError, match="non-finite"):
        load_dataset("broken")


def test_label_flips_do_not_depend_on_input_noise():
    labels_only = load_dataset("digits", split_seed=3, label_noise=0.2)
    with_inputs = load_dataset("digits", split_seed=3, label_noise=0.2, input_noise=0.5)
    assert torch.equal(labels_only.y_train, with_inputs.y_train)
    assert not torch.equal(labels_only.x_train, with_inputs.x_train)


def test_nested_options_are_valid_cache_keys():
    options = {"samples": 120, "features": 6, "informative": 3, "classes": 3, "seed": 4}
    first = load_dataset("synthetic", **options, extra={"note": [1, 2]})
    assert load_dataset("synthetic", **options, extra={"note": [1, 2]}) is first
