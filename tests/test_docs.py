"""The docs agree with the files their figures come from."""

from __future__ import annotations

import json
import re

from tests.helpers import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
BENCHMARKS_README = PROJECT_ROOT / "benchmarks" / "README.md"
FIGURE = re.compile(r"\d+\.\d+(?:%| min)")  # 98.89%, 13.6 min


def quality_table() -> list[list[str]]:
    """The rows of the README's Quality table, each a list of its cells."""
    section = README.read_text(encoding="utf-8").split("### Quality", 1)[1].split("\n\n", 2)[1]
    rows = [[cell.strip() for cell in line.strip().strip("|").split(" | ")]
            for line in section.splitlines() if line.startswith("| ")]
    return rows[2:]  # after the header and its rule


def test_the_quality_table_agrees_with_the_files_its_figures_come_from():
    rows = quality_table()
    assert [row[0].split(" ", 1)[0] for row in rows] == ["digits", "2,000", "the", "real"]
    committed = json.loads((PROJECT_ROOT / "metrics" / "evaluate.json").read_text())["accuracy"]
    assert FIGURE.findall(rows[0][2]) == [f"{100 * committed:.2f}%"], "the default's is metrics/evaluate.json's"
    recorded = BENCHMARKS_README.read_text(encoding="utf-8")
    for row in rows[1:]:
        for figure in FIGURE.findall(" ".join(row[2:])):
            assert figure in recorded, f"{figure} of the Quality row {row[0]!r} is not in benchmarks/README.md"
