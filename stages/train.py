"""Train stage: fit ``train.model`` on the training split; keep the best epoch by validation loss.

Reads:  data/resized/train, data/resized/val, data/resized/preprocessing.json, params.yaml ``train``
Writes: models/model.keras (the best epoch's weights), models/classes.json (index -> class name),
        models/preprocessing.json (how images were resized, for `imgclf predict`), models/summary.txt
        (layers and parameter counts; models/architecture.png too when Graphviz is installed),
        metrics/train.json (the kept epoch's scores), metrics/history/ (DVCLive: per-epoch train
        and validation loss and accuracy, for `dvc plots`), metrics/figures/train/training_curves.png
Run:    dvc repro train   or   dvc exp run -S train.epochs=50
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from imgclf.params import load_section
from imgclf.stage import run_stage

logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, required=True, help="folder of training images by class")
    parser.add_argument("--val", type=Path, required=True, help="folder of validation images by class")
    parser.add_argument("--model-dir", type=Path, required=True, help="folder for the model and its classes")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON summary of the kept epoch")
    parser.add_argument("--preprocessing", type=Path, required=True, help="the resize stage's preprocessing.json")
    parser.add_argument("--history", type=Path, required=True, help="DVCLive folder for per-epoch curves")
    parser.add_argument("--figures", type=Path, required=True, help="folder for the training curves PNG")
    args = parser.parse_args()
    params = load_section("train")  # checked before Keras is imported: a bad param fails fast

    import keras
    from dvclive import Live

    from imgclf.dataset import load_image_folder
    from imgclf.figures import training_curves
    from imgclf.files import atomic_directory, write_json
    from imgclf.modelcard import write_model_card
    from imgclf.modelio import save_model
    from imgclf.models import build_model
    from imgclf.preprocessing import PREPROCESSING_FILE, Preprocessing
    from imgclf.training import EpochLogger, compile_model, fit, make_deterministic, summary_metrics

    make_deterministic(params.seed)
    train_set = load_image_folder(args.train)
    val_set = load_image_folder(args.val, train_set.class_names)
    model = build_model(params.model, train_set.images.shape[1:], len(train_set.class_names),
                        params.dropout_rate, params.augment, params.seed)
    compile_model(model, params)
    logger.info("training %s (%s parameters) with the %s backend", params.model,
                f"{model.count_params():,}", keras.backend.backend())

    with Live(dir=str(args.history), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        result = fit(model, train_set, val_set, params, callbacks=[EpochLogger(live)])

    with atomic_directory(args.model_dir) as staging:
        save_model(model, staging / "model.keras")
        write_json(staging / "classes.json", list(train_set.class_names))
        Preprocessing.load(args.preprocessing).save(staging / PREPROCESSING_FILE)
        write_model_card(model, staging)
    with atomic_directory(args.figures) as staging:
        training_curves(result.history, result.best_epoch, staging / "training_curves.png")
    write_json(args.metrics, summary_metrics(result, model, train_set, val_set))


if __name__ == "__main__":
    run_stage(main)
