"""The train/validation split: deterministic, order-independent, stratified."""

from __future__ import annotations

import random

import numpy as np
import pytest

from medserve.data import split_indices
from medserve.errors import UsageError


def _files(counts: dict[int, int]) -> tuple[list[str], np.ndarray]:
    keys = [f"class{c}/img{i:03d}.png" for c, n in counts.items() for i in range(n)]
    labels = np.array([c for c, n in counts.items() for _ in range(n)])
    return keys, labels


def _validation_keys(keys: list[str], labels: np.ndarray, seed: int = 0) -> set[str]:
    _, val = split_indices(keys, labels, validation_split=0.2, seed=seed)
    return {keys[i] for i in val}


def test_split_is_the_same_for_a_shuffled_listing_of_the_same_files() -> None:
    keys, labels = _files({0: 30, 1: 17, 2: 9})
    expected = _validation_keys(keys, labels)
    order = list(range(len(keys)))
    random.Random(4).shuffle(order)
    shuffled_keys = [keys[i] for i in order]
    assert _validation_keys(shuffled_keys, labels[order]) == expected
    assert _validation_keys(keys, labels) == expected  # and across calls


def test_split_is_stratified_per_class() -> None:
    keys, labels = _files({0: 50, 1: 20, 2: 5})
    train, val = split_indices(keys, labels, validation_split=0.2, seed=0)
    assert np.bincount(labels[val]).tolist() == [10, 4, 1]
    assert np.bincount(labels[train]).tolist() == [40, 16, 4]
    assert set(train).isdisjoint(val)
    assert sorted([*train, *val]) == list(range(len(keys)))


def test_different_seeds_choose_different_validation_images() -> None:
    keys, labels = _files({0: 40, 1: 40})
    assert _validation_keys(keys, labels, seed=0) != _validation_keys(keys, labels, seed=1)


def test_adding_a_file_moves_no_other_file_between_sides() -> None:
    keys, labels = _files({0: 40, 1: 40})
    before = _validation_keys(keys, labels)
    more_keys = [*keys, "class0/img999.png"]
    after = _validation_keys(more_keys, np.append(labels, 0))
    # The new image either stays in training or takes one validation place.
    changed = before ^ after
    assert len(changed) <= 2
    assert all(k.startswith("class0/") for k in changed)


def test_small_class_keeps_one_image_on_each_side() -> None:
    keys, labels = _files({0: 2, 1: 20})
    train, val = split_indices(keys, labels, validation_split=0.1, seed=0)
    assert np.bincount(labels[val]).tolist() == [1, 2]
    assert np.bincount(labels[train]).tolist() == [1, 18]


def test_class_with_a_single_image_is_a_usage_error_naming_it() -> None:
    keys, labels = _files({0: 1, 1: 5})
    with pytest.raises(UsageError, match="'rare'"):
        split_indices(keys, labels, validation_split=0.2, seed=0, label_names=["rare", "common"])


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_validation_split_outside_zero_one_is_a_usage_error(fraction: float) -> None:
    keys, labels = _files({0: 5, 1: 5})
    with pytest.raises(UsageError, match="validation_split"):
        split_indices(keys, labels, validation_split=fraction, seed=0)
