"""Resize every split of the manifest into packed splits, counting what happened to each file.

The resize stage's work: each split's images come back from the workers (:func:`imgclf.data.images.iter_resized`)
and go straight into its shards (:class:`imgclf.data.dataset.ShardWriter`), one shard in memory at a
time; what is kept is counted per class, every file that was not used as it was is listed, and the
source images' sizes, shapes and modes are counted for ``metrics/data/`` (its table and plots).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgclf.data.dataset import ShardWriter
from imgclf.data.images import ResizeJob, ResizeOutcome, iter_resized
from imgclf.data.layout import SUBSETS
from imgclf.data.manifest import ManifestEntry
from imgclf.data.params import ResizeParams
from imgclf.data.preprocessing import PREPROCESSING_FILE, Preprocessing
from imgclf.data.stats import SourceStatistics

# metrics/data/splits.csv: what each split holds and how its source images looked
SPLIT_COLUMNS = ("split", "images", "unusable", "repaired", "damaged_but_used", "enlarged", "shrunk_or_kept",
                 "portrait", "landscape", "square", "modes")


@dataclass
class ResizeReport:
    """What resizing the splits did: images kept per split and class, files per outcome, the source images."""

    kept_per_class: dict[str, dict[str, int]] = field(default_factory=dict)
    actions: dict[str, Counter[str]] = field(default_factory=dict)  # per split: used, repaired, warning, skipped
    noteworthy: list[ResizeOutcome] = field(default_factory=list)  # every outcome but "used", for the report
    statistics: dict[str, SourceStatistics] = field(default_factory=dict)

    def count(self, action: str) -> dict[str, int]:
        return {subset: self.actions[subset][action] for subset in SUBSETS}

    def counts(self) -> dict[str, Any]:
        """What ``metrics/data.json`` holds: the images kept and the files left out, per split (a DVC
        metric: a few figures, so that ``dvc exp show`` stays readable; the rest is in :meth:`split_rows`)."""
        return {"images": {subset: sum(self.kept_per_class[subset].values()) for subset in SUBSETS},
                "unusable": self.count("skipped")}

    def split_rows(self) -> list[tuple[object, ...]]:
        """The rows of ``metrics/data/splits.csv`` (:data:`SPLIT_COLUMNS`): per split, the images kept,
        the files left out, repaired and used despite damage, and the source images' sizes and modes."""
        rows = []
        for subset in SUBSETS:
            statistics = self.statistics[subset]
            source = statistics.summary()
            modes = "; ".join(f"{mode} {count}" for mode, count in sorted(statistics.modes.items()))
            rows.append((subset, sum(self.kept_per_class[subset].values()), self.actions[subset]["skipped"],
                         self.actions[subset]["repaired"], self.actions[subset]["warning"],
                         *(source[column] for column in SPLIT_COLUMNS[5:-1]), modes))
        return rows

    def listed_rows(self) -> list[tuple[str, str, str]]:
        """The rows of ``metrics/skipped_resize.csv``: file, action, reason."""
        return [(str(outcome.source), outcome.action, outcome.reason) for outcome in self.noteworthy]


def resize_splits(entries: list[ManifestEntry], params: ResizeParams, folder: Path) -> ResizeReport:
    """Write each split of ``entries`` at ``resize.size`` into ``folder/<split>/``, and the
    ``preprocessing.json`` that the model keeps for predictions."""
    class_names = tuple(sorted({entry.label for entry in entries}))
    report = ResizeReport()
    for subset in SUBSETS:
        report.statistics[subset] = SourceStatistics(params.size)
        kept, report.actions[subset] = _resize_subset(
            subset, [entry for entry in entries if entry.subset == subset], class_names, params, folder / subset,
            report)
        report.kept_per_class[subset] = dict(sorted(kept.items()))
    Preprocessing(params.size, params.mode, params.max_megapixels).save(folder / PREPROCESSING_FILE)
    return report


def _resize_subset(subset: str, entries: list[ManifestEntry], class_names: tuple[str, ...], params: ResizeParams,
                   folder: Path, report: ResizeReport) -> tuple[Counter[str], Counter[str]]:
    """Write the usable images of ``entries`` (split ``subset``), at the training size, as the split folder ``folder``;
    return the images kept per class and the files per outcome; list the noteworthy outcomes and
    count the source images in ``report``. One shard is in memory at a time."""
    jobs = [ResizeJob(Path(entry.file), entry.sha256) for entry in entries]
    writer = ShardWriter(folder, (*params.size, 3), class_names, int(params.shard_mb * 2**20))
    index_of = {name: index for index, name in enumerate(class_names)}
    statistics = report.statistics[subset]
    kept: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    resized = iter_resized(jobs, params.size, params.mode, params.max_megapixels * 1e6,
                           description=f"resizing {subset}")
    for entry, (outcome, pixels) in zip(entries, resized, strict=True):
        actions[outcome.action] += 1
        if outcome.action != "used":
            report.noteworthy.append(outcome)
        if pixels is not None:
            writer.add(pixels, index_of[entry.label], entry.file)  # a full disk or a read-only folder: see run_stage
            kept[entry.label] += 1
            if outcome.image is not None:
                statistics.add(outcome.image)
    writer.close()
    return kept, actions
