"""``imgclf report``: what a change did, as Markdown to post on a pull request.

The report compares the workspace (or a revision or experiment, ``--rev``) with a base revision:
the params that changed (``dvc params diff``), the metrics that matter and every other metric that
moved (``dvc metrics diff``), and the PNG figures of the run (training curves, confusion matrix,
most confident mistakes). It is a folder, ``report/report.md`` beside ``report/figures/``, whose
relative image links CML's ``cml comment create --publish`` uploads, as DVC's example projects do.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgclf.plumbing.errors import PipelineError
from imgclf.plumbing.files import atomic_directory

REPORT_FILE = "report.md"
# what `dvc params diff --json` and `dvc metrics diff --json` print: {file: {key: {"old", "new", "diff"}}}
DiffJson = dict[str, dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class Headline:
    """A metric every report shows, changed or not, and which way is better."""

    file: str
    key: str
    label: str
    higher_is_better: bool


HEADLINES = (
    Headline("metrics/evaluate.json", "accuracy", "test accuracy", higher_is_better=True),
    Headline("metrics/evaluate.json", "macro_f1", "test macro F1", higher_is_better=True),
    Headline("metrics/evaluate.json", "roc_auc", "test ROC AUC", higher_is_better=True),
    Headline("metrics/evaluate.json", "loss", "test loss", higher_is_better=False),
    Headline("metrics/evaluate.json", "ece", "calibration error (ECE)", higher_is_better=False),
    Headline("metrics/train.json", "val_accuracy", "validation accuracy (best epoch)", higher_is_better=True),
)
FIGURES = (
    ("training curves", "metrics/figures/train/training_curves.png"),
    ("confusion matrix", "metrics/figures/evaluate/confusion_matrix.png"),
    ("most confident mistakes", "metrics/figures/evaluate/mistakes.png"),
)
# The files whose changes a report lists: dvc.yaml's metrics, and the train stage's record, which
# dvc.yaml leaves out of `dvc exp show` (DVCLive's per-epoch copy of the same figures is left out here)
METRIC_FILES = ("metrics/evaluate.json", "metrics/train.json", "metrics/data.json", "metrics/export.json")


@dataclass(frozen=True)
class Change:
    """One param or metric in both revisions (``None`` where a revision does not have it)."""

    name: str
    old: Any
    new: Any


def dvc_json(repo_root: Path, command: Sequence[str]) -> DiffJson:
    """Run ``dvc COMMAND`` with ``--json`` after its subcommand (``dvc metrics diff --json ...``) in the
    repository and parse what it prints."""
    # this interpreter's DVC: `imgclf report` works from .venv/bin without the venv on PATH
    result = subprocess.run([sys.executable, "-m", "dvc", *command[:2], "--json", *command[2:]], cwd=repo_root,
                            text=True, capture_output=True, check=False)
    if result.returncode != 0:
        raise PipelineError(f"`dvc {' '.join(command)}` failed: {result.stderr.strip() or result.stdout.strip()}")
    diff: DiffJson = json.loads(result.stdout or "{}")
    return diff


def revisions(base: str, rev: str | None) -> list[str]:
    """The revisions for ``dvc params/metrics diff``: the base, then the revision (none: the workspace)."""
    return [base] if rev is None else [base, rev]


def param_changes(params_diff: DiffJson) -> list[Change]:
    """``dvc params diff --json`` as a list, params files merged (params.yaml is the only one here)."""
    return [Change(name, values.get("old"), values.get("new"))
            for file_changes in params_diff.values() for name, values in sorted(file_changes.items())]


def metric_changes(metrics_diff: DiffJson) -> tuple[list[tuple[Headline, Change]], list[Change]]:
    """The headline metrics (always), and every other metric whose value changed."""
    headlines = []
    for headline in HEADLINES:
        values = metrics_diff.get(headline.file, {}).get(headline.key, {})
        headlines.append((headline, Change(headline.key, values.get("old"), values.get("new"))))
    shown = {(headline.file, headline.key) for headline in HEADLINES}
    others = [Change(f"{file}: {key}", values.get("old"), values.get("new"))
              for file, changes in sorted(metrics_diff.items())
              for key, values in sorted(changes.items())
              if (file, key) not in shown and values.get("old") != values.get("new")]
    return headlines, others


def format_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    return f"`{json.dumps(value)}`" if isinstance(value, list | dict) else str(value)


def format_delta(change: Change, higher_is_better: bool | None = None) -> str:
    if not isinstance(change.old, int | float) or not isinstance(change.new, int | float) \
            or isinstance(change.old, bool) or isinstance(change.new, bool):
        return ""
    delta = change.new - change.old
    if delta == 0:
        return "no change"
    text = f"{delta:+.4f}" if isinstance(delta, float) else f"{delta:+d}"
    if higher_is_better is None:
        return text
    return f"{text} ({'better' if (delta > 0) == higher_is_better else 'worse'})"


def render_report(rev_label: str, base_label: str, params: list[Change],
                  headlines: list[tuple[Headline, Change]], other_metrics: list[Change],
                  figures: list[tuple[str, str]]) -> str:
    """The Markdown of the report; ``figures`` are (title, path relative to the report)."""
    lines = [f"# imgclf report: {rev_label} vs {base_label}", ""]
    lines += ["## Params that changed", ""]
    if params:
        lines += [f"| param | {base_label} | {rev_label} |", "| --- | --- | --- |"]
        lines += [f"| `{change.name}` | {format_value(change.old)} | {format_value(change.new)} |" for change in params]
    else:
        lines.append("No param changed.")
    lines += ["", "## Metrics", "", f"| metric | {base_label} | {rev_label} | change |", "| --- | --- | --- | --- |"]
    lines += [f"| {headline.label} | {format_value(change.old)} | {format_value(change.new)} | "
              f"{format_delta(change, headline.higher_is_better)} |" for headline, change in headlines]
    if other_metrics:
        lines += ["", f"<details><summary>{len(other_metrics)} other metrics changed</summary>", "",
                  f"| metric | {base_label} | {rev_label} | change |", "| --- | --- | --- | --- |"]
        lines += [f"| {change.name} | {format_value(change.old)} | {format_value(change.new)} | "
                  f"{format_delta(change)} |" for change in other_metrics]
        lines += ["", "</details>"]
    if figures:
        lines += ["", f"## Figures ({rev_label})"]
        for title, path in figures:
            lines += ["", f"### {title.capitalize()}", "", f"![{title}]({path})"]
    return "\n".join(lines) + "\n"


def read_figure(repo_root: Path, path: str, rev: str | None) -> bytes | None:
    """A figure's bytes in the workspace or at ``rev`` (a commit, tag, branch or experiment name)."""
    if rev is None:
        file = repo_root / path
        return file.read_bytes() if file.exists() else None
    import dvc.api

    try:
        with dvc.api.open(path, repo=str(repo_root), rev=rev, mode="rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def revision_label(repo_root: Path, rev: str) -> str:
    """``rev`` with its short commit where git knows it (``origin/main (3f2a1b0)``); an experiment's name as is."""
    result = subprocess.run(["git", "rev-parse", "--short", f"{rev}^{{commit}}"], cwd=repo_root, text=True,
                            capture_output=True, check=False)
    commit = result.stdout.strip()
    return f"{rev} ({commit})" if result.returncode == 0 and commit != rev else rev


def write_report(repo_root: Path, output: Path, base: str = "HEAD", rev: str | None = None) -> Path:
    """Write ``output/report.md`` and its figures; return the Markdown file's path."""
    if output.exists() and not (output / REPORT_FILE).exists() and (not output.is_dir() or any(output.iterdir())):
        raise PipelineError(f"{output} holds something other than a report, and the report replaces the whole "
                            "folder: choose another --output")
    compared = revisions(base, rev)
    params = param_changes(dvc_json(repo_root, ["params", "diff", *compared]))
    headlines, other_metrics = metric_changes(dvc_json(repo_root, ["metrics", "diff", "--all", "--targets",
                                                                   *METRIC_FILES, "--", *compared]))
    figures = [(title, path, read_figure(repo_root, path, rev)) for title, path in FIGURES]
    with atomic_directory(output) as staging:
        (staging / "figures").mkdir()
        linked = []
        for title, path, content in figures:
            if content is not None:
                (staging / "figures" / Path(path).name).write_bytes(content)
                linked.append((title, f"figures/{Path(path).name}"))
        markdown = render_report(rev or "workspace", revision_label(repo_root, base), params, headlines,
                                 other_metrics, linked)
        (staging / REPORT_FILE).write_text(markdown)
    return output / REPORT_FILE
