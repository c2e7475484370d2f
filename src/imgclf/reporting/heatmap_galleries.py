"""The evaluate stage's heatmap galleries, drawn by a process of their own while the stage draws the rest.

Where the train stage wrote the model folder's ONNX heatmap graphs (:mod:`imgclf.serving.heatmap_models`),
the process runs them in ONNX Runtime (:mod:`imgclf.reporting.heatmaps`: no gradients, no
TensorFlow); elsewhere it needs the Keras model's gradients (:mod:`imgclf.reporting.explain`), and
Keras takes seconds to import (TensorFlow: 4-8 s on 2 cores). Either way the process imports while
the stage predicts, and draws while the stage draws its other figures: on 2 cores the galleries
then cost the stage almost nothing. This module imports neither Keras nor the figures' libraries,
so that the stage can start the process first thing.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from imgclf.plumbing.stage import exit_reason
from imgclf.reporting.params import EvaluateParams

if TYPE_CHECKING:
    from imgclf.data.dataset import Split
    from imgclf.reporting.figures import Heatmaps

logger = logging.getLogger(__name__)

GALLERIES = ("mistakes", "samples")  # each drawn again with heatmaps: <name>_heatmaps.png
HEATMAPS_OFF = "evaluate.heatmaps is false (dvc exp run -S evaluate.heatmaps=true draws them)"


class HeatmapGalleries:
    """The heatmap galleries (``mistakes_heatmaps.png``, ``samples_heatmaps.png``) of a model over
    ``split_folder``, drawn into ``folder`` by a new Python process.

    The process starts on entering the block. With ``onnx_graphs`` (the model folder's features and
    scores graphs) it runs :mod:`imgclf.reporting.heatmaps`, which opens them in ONNX Runtime; else
    :mod:`imgclf.reporting.explain`, which imports Keras, on the backend ``KERAS_BACKEND`` names (the
    evaluate stage sets it from ``train.backend``), and loads the ``.keras`` file ``model_file``.
    Meanwhile this one predicts both splits; :meth:`draw` hands the process the test probabilities
    (the galleries choose their images by them), and it computes the heatmaps while this one finds
    the label issues and draws the other figures. If it fails or is killed, both galleries say so
    and the other figures are untouched; leaving the block before :meth:`wait` stops it. With
    ``evaluate.heatmaps`` false no process starts, and both galleries say the heatmaps are off.
    """

    def __init__(self, model_file: Path, split_folder: Path, class_names: Sequence[str], params: EvaluateParams,
                 folder: Path, onnx_graphs: tuple[Path, Path] | None = None) -> None:
        self.folder = folder
        self._on = params.heatmaps
        self._job: dict[str, object] = {"split": str(split_folder), "class_names": list(class_names),
                                        "mistakes": params.mistakes, "per_class": params.samples_per_class}
        if onnx_graphs is not None:
            self._module = "imgclf.reporting.heatmaps"
            self._job.update(features=str(onnx_graphs[0]), scores=str(onnx_graphs[1]))
        else:
            self._module = "imgclf.reporting.explain"
            self._job.update(model=str(model_file))
        self._scratch = tempfile.TemporaryDirectory(prefix="imgclf-heatmaps-")
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> HeatmapGalleries:
        if not self._on:
            return self
        job = Path(self._scratch.name)
        (job / "job.json").write_text(json.dumps(self._job))
        self._process = subprocess.Popen([sys.executable, "-m", self._module, "--job", str(job),
                                          "--folder", str(self.folder)], stdin=subprocess.PIPE, text=True)
        return self

    def draw(self, probabilities: np.ndarray) -> None:
        """Hand the process the test split's probabilities: it draws once it has loaded the model."""
        if not self._on:
            return
        process = self._running()
        np.save(Path(self._scratch.name) / "probabilities.npy", probabilities)
        try:
            process.stdin.write("draw\n")  # type: ignore[union-attr]  # (stdin is a pipe)
            process.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:  # it has ended already: wait() says how
            pass

    def wait(self) -> str | None:
        """What the heatmaps come from ("heatmaps from <layer>"), or None where there are none: both
        galleries then say why."""
        if not self._on:
            draw_no_heatmaps(HEATMAPS_OFF, self.folder)
            return None
        returncode = self._running().wait()
        report = Path(self._scratch.name) / "report.json"
        if returncode == 0 and report.is_file():
            return json.loads(report.read_text())["heatmaps_from"]
        why = f"their process {exit_reason(returncode)}"
        logger.warning("no heatmaps: %s; the stage's other figures are drawn", why)
        draw_no_heatmaps(why, self.folder)
        return None

    def _running(self) -> subprocess.Popen[str]:
        if self._process is None:
            raise RuntimeError("use HeatmapGalleries in a with block")
        return self._process

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._scratch.cleanup()


def draw_no_heatmaps(why: str, folder: Path) -> None:
    """Each heatmap gallery in ``folder`` as a page that says why it has no heatmaps."""
    from imgclf.reporting import figures

    for name in GALLERIES:
        figures.message_page(f"No heatmaps of the {name}", why, folder / f"{name}_heatmaps.png")


def draw_galleries(heatmaps: Heatmaps, split: Split, probabilities: np.ndarray, class_names: Sequence[str],
                   mistakes: int, per_class: int, folder: Path) -> None:
    """Both galleries of ``split`` in ``folder``, each image overlaid with ``heatmaps`` of the class
    the model predicted for it (``probabilities``, one row per image of the split)."""
    from imgclf.reporting import figures

    for name, gallery, count in zip(GALLERIES, (figures.mistakes_gallery, figures.samples_grid),
                                    (mistakes, per_class), strict=True):
        gallery(split.read, split.labels, probabilities, class_names, count, folder / f"{name}_heatmaps.png",
                heatmaps=heatmaps)


# What a heatmaps' process prepares from its job (the model, loaded while the stage predicts): a
# function that draws both galleries of a split with its probabilities into a folder, and returns
# what the heatmaps come from ("heatmaps from <layer>"), or None where there are none.
DrawGalleries = Callable[["Split", np.ndarray, Path], "str | None"]


def serve_galleries_job(arguments: Sequence[str] | None, description: str,
                        prepare: Callable[[dict[str, Any]], DrawGalleries]) -> None:
    """The process side of :class:`HeatmapGalleries` (``python -m imgclf.reporting.explain`` or
    ``imgclf.reporting.heatmaps``): ``prepare`` the job, then draw once the line "draw" on stdin
    says the probabilities are there (at end of input without it, nothing is drawn)."""
    from imgclf.data.dataset import open_split

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--job", type=Path, required=True,
                        help="folder of job.json (the model, the split, the gallery sizes) and probabilities.npy")
    parser.add_argument("--folder", type=Path, required=True, help="where the galleries are drawn")
    args = parser.parse_args(arguments)
    job = json.loads((args.job / "job.json").read_text())
    draw = prepare(job)
    if sys.stdin.readline().strip() != "draw":
        return
    probabilities = np.load(args.job / "probabilities.npy")
    with open_split(Path(job["split"]), job["class_names"]) as split:
        heatmaps_from = draw(split, probabilities, args.folder)
    (args.job / "report.json").write_text(json.dumps({"heatmaps_from": heatmaps_from}))
