"""A model card beside the model: its layer summary and parameter counts, and a diagram if possible.

The diagram needs Graphviz's ``dot`` program (and the ``pydot`` package, a dependency of DVC).
Without ``dot`` the card says how to get it instead of failing the stage.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import keras

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.txt"
DIAGRAM_FILE = "architecture.png"
GRAPHVIZ_HELP = ("architecture diagram not drawn: Graphviz's `dot` program is not installed. Install it "
                 "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz; conda: conda install "
                 "graphviz) and rerun the train stage (dvc repro -f train) to get models/architecture.png.")


def layer_summary(model: keras.Model) -> str:
    """Keras' layer table (nested models expanded) with the total, trainable and frozen parameter counts."""
    parts: list[str] = []
    model.summary(print_fn=lambda text, **_: parts.append(text), line_length=120, expand_nested=True)
    return "\n".join(part.rstrip("\n") for part in parts) + "\n"


def write_model_card(model: keras.Model, folder: Path) -> None:
    """Write ``summary.txt`` and, when Graphviz is installed, ``architecture.png`` into ``folder``."""
    card = layer_summary(model)
    if shutil.which("dot"):
        keras.utils.plot_model(model, to_file=str(folder / DIAGRAM_FILE), show_shapes=True,
                               show_layer_names=True, expand_nested=True, dpi=80)
        card += f"\nArchitecture diagram: {DIAGRAM_FILE}\n"
    else:
        logger.info(GRAPHVIZ_HELP)
        card += f"\nNote: {GRAPHVIZ_HELP}\n"
    (folder / SUMMARY_FILE).write_text(card, encoding="utf-8")
