"""Unit tier of ``imgclf report``: DVC's diff JSON in, Markdown tables out (tests/test_team.py runs
the real command on two real runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgclf.plumbing.errors import PipelineError
from imgclf.reporting.report import (
    Change,
    DiffJson,
    format_delta,
    metric_changes,
    param_changes,
    render_report,
    write_report,
)

METRICS_DIFF: DiffJson = {
    "metrics/evaluate.json": {"accuracy": {"old": 0.9, "new": 0.95, "diff": 0.05},
                              "loss": {"old": 0.30, "new": 0.40, "diff": 0.10},
                              "test_images": {"old": 100, "new": 100, "diff": 0}},
    "metrics/train.json": {"epochs": {"old": 3, "new": 5, "diff": 2}},
}


def test_param_changes_lists_each_changed_param():
    diff: DiffJson = {"params.yaml": {"train.epochs": {"old": 3, "new": 5},
                                      "resize.size": {"old": [32, 32], "new": [64, 64]}}}
    assert param_changes(diff) == [Change("resize.size", [32, 32], [64, 64]), Change("train.epochs", 3, 5)]


def test_metric_changes_always_shows_the_headlines_and_only_the_other_metrics_that_moved():
    headlines, others = metric_changes(METRICS_DIFF)
    by_key = {headline.key: change for headline, change in headlines}
    assert by_key["accuracy"] == Change("accuracy", 0.9, 0.95)
    assert by_key["roc_auc"] == Change("roc_auc", None, None)  # in neither revision: shown as "—"
    assert others == [Change("metrics/train.json: epochs", 3, 5)]  # not test_images (same)


def test_deltas_say_which_way_is_better():
    assert format_delta(Change("accuracy", 0.9, 0.95), higher_is_better=True) == "+0.0500 (better)"
    assert format_delta(Change("loss", 0.3, 0.4), higher_is_better=False) == "+0.1000 (worse)"
    assert format_delta(Change("epochs", 3, 5)) == "+2"
    assert format_delta(Change("accuracy", 0.9, 0.9), higher_is_better=True) == "no change"
    assert format_delta(Change("accuracy", None, 0.9), higher_is_better=True) == ""


def test_render_report_tables_and_figure_links():
    headlines, others = metric_changes(METRICS_DIFF)
    markdown = render_report("workspace", "main (abc1234)", [Change("train.epochs", 3, 5)], headlines, others,
                             [("confusion matrix", "figures/confusion_matrix.png")])
    assert "# imgclf report: workspace vs main (abc1234)" in markdown
    assert "| `train.epochs` | 3 | 5 |" in markdown
    assert "| test accuracy | 0.9000 | 0.9500 | +0.0500 (better) |" in markdown
    assert "| test ROC AUC | — | — |  |" in markdown
    assert "<details><summary>1 other metrics changed</summary>" in markdown
    assert "![confusion matrix](figures/confusion_matrix.png)" in markdown


def test_report_refuses_to_replace_a_folder_that_is_not_a_report(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(PipelineError, match="holds something other than a report"):
        write_report(tmp_path, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
