from collections import Counter
from pathlib import Path

import pytest

from imgclf.data.layout import LabelledFile
from imgclf.data.split import (
    SplitError,
    count_by_class,
    split_items,
)


def files(counts: dict[str, int], subset: str | None = None) -> list[LabelledFile]:
    return [LabelledFile(Path(f"/{subset}/{label}/{i}.png"), label, subset, f"{i}.png")
            for label, count in counts.items() for i in range(count)]


def paths(items):
    return {item.path for item in items}


def test_fractions_are_of_all_images_and_stratified():
    split = split_items(files({"a": 60, "b": 40}), val_fraction=0.2, test_fraction=0.1, seed=0)
    assert {subset: len(items) for subset, items in split.items()} == {"train": 70, "val": 20, "test": 10}
    assert count_by_class(split) == {"train": {"a": 42, "b": 28}, "val": {"a": 12, "b": 8},
                                     "test": {"a": 6, "b": 4}}


def test_every_file_lands_in_exactly_one_split():
    items = files({"a": 37, "b": 23, "c": 11})
    split = split_items(items, 0.15, 0.15, seed=3)
    train, val, test = (paths(split[s]) for s in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    assert train | val | test == paths(items)


def test_same_seed_same_split_whatever_the_input_order():
    items = files({"a": 30, "b": 30})
    first = split_items(items, 0.2, 0.2, seed=7)
    second = split_items(list(reversed(items)), 0.2, 0.2, seed=7)
    assert first == second


def test_another_seed_gives_another_split():
    items = files({"a": 30, "b": 30})
    assert split_items(items, 0.2, 0.2, seed=1)["test"] != split_items(items, 0.2, 0.2, seed=2)["test"]


def test_a_sources_own_test_split_is_kept_and_val_carved_from_train():
    items = files({"a": 50, "b": 50}, "train") + files({"a": 7, "b": 9}, "test")
    split = split_items(items, val_fraction=0.2, test_fraction=0.3, seed=0)
    assert paths(split["test"]) == paths(files({"a": 7, "b": 9}, "test"))
    assert Counter(item.label for item in split["val"]) == {"a": 10, "b": 10}
    assert all(item.subset == "train" for item in split["train"] + split["val"])


def test_a_sources_own_validation_split_is_kept_and_test_carved():
    items = files({"a": 20, "b": 20}, "train") + files({"a": 3, "b": 3}, "val")
    split = split_items(items, 0.2, 0.25, seed=0)
    assert paths(split["val"]) == paths(files({"a": 3, "b": 3}, "val"))
    assert len(split["test"]) == 10 and len(split["train"]) == 30


def test_a_class_too_small_to_stratify_is_named():
    with pytest.raises(SplitError, match=r"class 'rare' has 1 image.*at least 2"):
        split_items(files({"common": 40, "rare": 1}), 0.2, 0.2, seed=0)


def test_a_split_smaller_than_the_number_of_classes_says_what_to_change():
    with pytest.raises(SplitError, match=r"fewer than one per class.*raise split\.test"):
        split_items(files({label: 5 for label in "abcdefgh"}), 0.2, 0.05, seed=0)


def test_mixing_split_and_unsplit_files_is_an_error():
    with pytest.raises(SplitError, match="every class folder inside a split folder, or none"):
        split_items(files({"a": 5}, "train") + files({"a": 5}), 0.2, 0.2, seed=0)

