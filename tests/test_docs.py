"""The docs agree with the files their figures come from, and the README's links lead somewhere.

`make docs` (part of `make test`) checks the links and anchors between the pages of docs/ with
`mkdocs build --strict`; the README is not one of those pages, so its links are checked here."""

from __future__ import annotations

import json
import re

from tests.helpers import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
QUALITY_PAGE = PROJECT_ROOT / "docs" / "quality.md"
BENCHMARKS_README = PROJECT_ROOT / "benchmarks" / "README.md"
FIGURE = re.compile(r"\d+\.\d+(?:%| min)")  # 98.89%, 13.6 min


def quality_table() -> list[list[str]]:
    """The rows of the Quality table (docs/quality.md), each a list of its cells."""
    section = QUALITY_PAGE.read_text(encoding="utf-8").split("# Quality", 1)[1].split("\n\n", 2)[1]
    rows = [[cell.strip() for cell in line.strip().strip("|").split(" | ")]
            for line in section.splitlines() if line.startswith("| ")]
    return rows[2:]  # after the header and its rule


def test_the_quality_table_agrees_with_the_files_its_figures_come_from():
    rows = quality_table()
    assert [row[0].split(" ", 1)[0] for row in rows] == ["digits", "2,000", "the", "the", "real", "the", "the"]
    committed = json.loads((PROJECT_ROOT / "metrics" / "evaluate.json").read_text())["accuracy"]
    assert FIGURE.findall(rows[0][2]) == [f"{100 * committed:.2f}%"], "the default's is metrics/evaluate.json's"
    recorded = BENCHMARKS_README.read_text(encoding="utf-8")
    for row in rows[1:]:
        for figure in FIGURE.findall(" ".join(row[2:])):
            assert figure in recorded, f"{figure} of the Quality row {row[0]!r} is not in benchmarks/README.md"


def test_every_relative_link_of_the_readme_names_a_file_of_the_checkout():
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text(encoding="utf-8"))
    relative = [link for link in links if "://" not in link]
    assert len(relative) >= 10, relative  # the pages of docs/, benchmarks/README.md
    assert [link for link in relative if not (PROJECT_ROOT / link).is_file()] == []


def test_every_line_the_command_runners_leave_out_is_still_in_the_docs_with_a_reason():
    from tests.doc_commands import NOT_RUN, README, doc_lines, manual_pages

    written = {line.command for page in (README, *manual_pages()) for line in doc_lines(page)}
    assert sorted(set(NOT_RUN) - written) == [], "listed in tests/doc_commands.py but no longer in the docs"
    assert all(len(reason) > 20 for reason in NOT_RUN.values())


def test_command_lines_are_read_as_a_shell_reads_them(tmp_path, monkeypatch):
    """A backslash joins two lines, a quotation may go on over lines, comments are not commands but
    name who runs the lines under them, and only bash blocks and `$ ` prompts hold commands."""
    import tests.doc_commands as doc_commands

    (tmp_path / "page.md").write_text(
        "```bash\n# B\ndvc exp run -S a=1 \\\n            -S b=2   # two params\n"
        "export X='{\"a\": 1,\n  \"b\": 2}'\n```\n\n```\n$ imgclf lr-find\nsuggested: 0.003\n```\n\n"
        "```yaml\nrun: make\n```\n")
    monkeypatch.setattr(doc_commands, "PROJECT_ROOT", tmp_path)
    lines = doc_commands.doc_lines("page.md")
    assert [(line.command, line.context) for line in lines] == [
        ("dvc exp run -S a=1 -S b=2", "B"), ("export X='{\"a\": 1, \"b\": 2}'", "B"), ("imgclf lr-find", "")]
    assert lines[1].text == "export X='{\"a\": 1,\n  \"b\": 2}'"
