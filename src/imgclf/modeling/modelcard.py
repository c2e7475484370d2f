"""A model card (its layer summary and parameter counts), and a diagram if possible.

The card is part of ``models/`` (``summary.txt``, :mod:`imgclf.serving.model_folder`), a DVC output:
it depends on the code, the params and the data only, so a fresh clone's reproduction gives the
same bytes. The diagram needs Graphviz's ``dot``
program (and the ``pydot`` package, a dependency of DVC), a system tool whose presence and version
vary from machine to machine: it is drawn outside DVC's outputs (``logs/architecture.png``), and
without ``dot`` the stage logs how to get it instead of failing.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import keras

logger = logging.getLogger(__name__)

GRAPHVIZ_HELP = ("architecture diagram not drawn: Graphviz's `dot` program is not installed. Install it "
                 "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz; conda: conda install "
                 "graphviz) and rerun the train stage (dvc repro -f train) to get logs/architecture.png.")


def layer_summary(model: keras.Model) -> str:
    """Keras' layer table (nested models expanded) with the total, trainable and frozen parameter counts:
    the same text on every machine with the same packages."""
    parts: list[str] = []
    model.summary(print_fn=lambda text, **_: parts.append(text), line_length=120, expand_nested=True)
    return "\n".join(part.rstrip("\n") for part in parts) + "\n"


def draw_architecture(model: keras.Model, path: Path) -> bool:
    """Draw the model's layer graph into ``path`` (PNG) when Graphviz is installed; else log how to get it."""
    if not shutil.which("dot"):
        logger.info(GRAPHVIZ_HELP)
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    keras.utils.plot_model(model, to_file=str(path), show_shapes=True, show_layer_names=True, expand_nested=True,
                           dpi=80)
    return True
