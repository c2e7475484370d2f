"""The command lines of the README and of the manual (docs/), in the order a reader meets them, and
the few that no test can run on this machine, each with its reason.

A command line is a line of a ```bash block (its continuation lines joined), or a line of another
block that starts with the prompt `$ `. tests/test_readme_commands.py runs every line of the README,
tests/test_manual_commands.py every other line of docs/ (a line the README has, in the reader's own
project, runs once, in the README's test), each through `bash -c` in a project of its own;
a line is left out only when `NOT_RUN` lists it. So a new line in the docs is run by the next test
run, or fails it, until it runs or is listed here with a reason.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from ruamel.yaml import YAML

from tests.helpers import PROJECT_ROOT

README = "README.md"
TRAILING_COMMENT = re.compile(r"\s+#\s.*$")

# The lines no test runs here, by their command (as `DocLine.command` gives it), with the reason.
NOT_RUN: dict[str, str] = {
    "make test":
        "the test suite itself: .ci/run runs exactly this command",
    "git clone <repo URL> && cd <repo> && make setup && source .venv/bin/activate":
        "`make setup` in a new clone installs every requirement into a new .venv from PyPI (minutes); "
        "person B's clone is made by `git clone` and given the test's environment, and B's lines run in it",
    "dvc exp run -S data.source=cifar10":
        "downloads 163 MB from www.cs.toronto.edu; no network here (tests/test_data_sources.py serves a "
        "CIFAR archive on 127.0.0.1 through data.url)",
    "dvc exp run -S data.source=cifar100 -S data.label_mode=coarse":
        "downloads 161 MB from www.cs.toronto.edu; no network here (tests/test_data_sources.py serves one)",
    "dvc exp run -S data.source=cifar10 -S data.url=file:///data/cifar-10-binary.tar.gz":
        "needs the official binary archive, whose md5 is checked; ../shared/datasets holds CIFAR-10 as "
        "JPEGs, not that archive (tests/test_data_sources.py runs file:// URLs with their checksum given)",
    "dvc exp run -S data.source=cifar10 -S data.url=https://mirror.example/cifar-10-binary.tar.gz":
        "a mirror on the internet; tests/test_data_sources.py serves the archive over HTTP on 127.0.0.1",
    "dvc exp run -S data.source=kaggle -S data.kaggle.competition=dogs-vs-cats":
        "the Kaggle API: needs the network and a Kaggle account's credentials",
    "dvc exp run -S data.source=kaggle -S data.kaggle.dataset=tongpython/cat-and-dog":
        "the Kaggle API: needs the network and a Kaggle account's credentials",
    "dvc exp run -S data.source=kaggle -S data.kaggle.competition=dogs-vs-cats -S resize.size=[160,160] "
    "-S train.model=transfer -S train.backbone=mobilenet_v2 -S train.epochs=10 -S train.fine_tune.epochs=10 "
    "-S train.fine_tune.layers=50 -S train.fine_tune.learning_rate=1e-5":
        "the Kaggle API and ImageNet weights from storage.googleapis.com: needs the network and Kaggle "
        "credentials (tests/test_models.py fine-tunes a transfer model from a weights file on disk)",
    "dvc exp run -S train.model=vgg16 -S resize.size=[64,64]":
        "VGG-16's 25 M parameters take minutes to train and copy to ONNX even on tiny data (93 s here); "
        "tests/test_models.py builds vgg16, trains it a step and reloads it; benchmarks/after_training.py "
        "measures its ONNX copy",
    "export TF_CONFIG='{\"cluster\": {\"worker\": [\"10.0.0.1:12345\", \"10.0.0.2:12345\"]}, "
    "\"task\": {\"type\": \"worker\", \"index\": 0}}'":
        "names two machines of a cluster; this is one",
    "dvc exp run -S train.backend=jax -S train.distribution=multi_worker":
        "trains on the two machines of TF_CONFIG; this is one",
    "imgclf tune --jobs 2":
        "16 trials of the shipped tune.yaml, each training the model (the manual's project would train for "
        "half an hour); tests/test_tune.py runs this line through bash on a search file of three trials",
    "imgclf tune --storage postgresql://tuner:secret@db.example/studies --push origin":
        "a database server on another machine; tests/test_tune.py runs this line in two clones against a "
        "PostgreSQL server it starts on 127.0.0.1, and kills one of them mid-trial",
    "imgclf tune --storage /mnt/shared/studies/search.log --push origin":
        "a folder shared between machines; tests/test_tune.py's pruning tests keep their study in a journal file",
}


@dataclass(frozen=True)
class DocLine:
    page: str  # "README.md", "docs/team.md"
    text: str  # as written; a line continued with a backslash is joined to the next
    context: str = ""  # the comment line above it in its block, if any: "A", "B" (docs/team.md's people)

    @property
    def command(self) -> str:
        """The line without its trailing comment, its whitespace collapsed: how NOT_RUN names it."""
        return " ".join(TRAILING_COMMENT.sub("", self.text).split())


def manual_pages() -> list[str]:
    """docs/'s pages in the order of mkdocs.yml's navigation."""
    nav = YAML(typ="safe").load((PROJECT_ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]
    return [f"docs/{page}" for entry in nav for page in entry.values()]


def doc_lines(page: str) -> list[DocLine]:
    """The command lines of one page, in order."""
    lines: list[DocLine] = []
    language: str | None = None  # inside a fenced block: its language ("" when unnamed)
    pending = ""
    context = ""
    for line in (PROJECT_ROOT / page).read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            language = None if language is not None else line[3:].strip()
            context = ""
            continue
        if language == "bash":
            command = line
        elif language is not None and line.startswith("$ "):
            command = line[2:]
        else:
            continue
        if command.endswith("\\"):
            pending += command[:-1].rstrip() + " "
            continue
        pending += command
        try:
            words = shlex.split(pending, comments=True)
        except ValueError:  # a quotation that goes on on the next line
            pending += "\n"
            continue
        if words:
            lines.append(DocLine(page, pending, context))
        elif pending.startswith("# "):
            context = pending[2:].strip()
        pending = ""
    return lines


def unlisted(lines: list[DocLine]) -> list[DocLine]:
    return [line for line in lines if line.command not in NOT_RUN]
