"""Train stage: fit ``train.model`` on the training split; keep the best epoch by validation loss.

Reads:  data/resized/train/ and val/ (split folders, read batch by batch) and preprocessing.json,
        params.yaml ``train``
Writes: models/ (imgclf.serving.model_folder): model.keras (the best epoch's weights), classes.json,
        preprocessing.json, summary.txt, and for a small model (train.onnx_in_process_mb) its ONNX
        copy, model.onnx; a larger model's copy is added by the stage's second command,
        stages/onnx_copy.py, once this process has ended and given back its memory;
        metrics/train.json (the kept epoch's scores, the parameter count, the device and precision),
        metrics/history/ (DVCLive: per-epoch curves, for `dvc plots` and a running `dvc exp show`),
        metrics/figures/train/ (training curves; augmented training images), logs/tensorboard/,
        logs/train_timing.json (images per second, seconds per epoch) and, with Graphviz,
        logs/architecture.png: not DVC outputs, since they differ between reruns and machines
        and would change dvc.lock
Keeps:  checkpoints/train/ while it runs: with train.resume, an interrupted run continues from there
Run:    dvc repro train   or   dvc exp run -S train.epochs=50
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from imgclf.modeling.backend import import_keras, use_backend
from imgclf.modeling.params import TrainParams
from imgclf.plumbing.params import load_section
from imgclf.plumbing.stage import collector_paused, optional_step, run_stage

logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, required=True, help="the training split's folder")
    parser.add_argument("--val", type=Path, required=True, help="the validation split's folder")
    parser.add_argument("--model-dir", type=Path, required=True, help="folder for the model and its classes")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON summary of the kept epoch")
    parser.add_argument("--preprocessing", type=Path, required=True, help="the resize stage's preprocessing.json")
    parser.add_argument("--history", type=Path, required=True, help="DVCLive folder for per-epoch curves")
    parser.add_argument("--figures", type=Path, required=True, help="folder for the training PNGs")
    parser.add_argument("--tensorboard", type=Path, default=Path("logs/tensorboard"),
                        help="folder for TensorBoard event files (train.tensorboard)")
    parser.add_argument("--timing", type=Path, default=Path("logs/train_timing.json"),
                        help="JSON of the run's speed, outside DVC's outputs (it differs on every rerun)")
    parser.add_argument("--diagram", type=Path, default=Path("logs/architecture.png"),
                        help="PNG of the layer graph (with Graphviz), outside DVC's outputs")
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints/train"),
                        help="folder for the last epoch's checkpoint while training runs")
    args = parser.parse_args()
    params = load_section(TrainParams)  # checked before Keras is imported: a bad param fails fast
    use_backend(params.backend)

    import_keras()  # the fast way: imgclf.modeling.backend.import_keras
    with collector_paused():  # DVCLive (pandas) and the library: a collection here walks all of Keras
        from dvclive import Live

        from imgclf.data.dataset import open_split
        from imgclf.data.preprocessing import Preprocessing
        from imgclf.modeling.devices import setup_devices
        from imgclf.modeling.modelcard import draw_architecture
        from imgclf.modeling.models import augmented_examples, build_from_params
        from imgclf.plumbing.files import atomic_directory, write_json
        from imgclf.reporting.figures import augmented_grid, training_curves
        from imgclf.serving.heatmap_models import add_heatmap_models
        from imgclf.serving.model_folder import add_onnx_copy, onnx_copy_in_training, write_model_folder
        from imgclf.training.checkpoints import run_checkpoints
        from imgclf.training.loop import make_deterministic, train
        from imgclf.training.sinks import epoch_sinks
        from imgclf.training.summary import summary_metrics, timing_record
        from imgclf.tuning.trial import reporter_from_environment

    devices = setup_devices(params.distribution, params.mixed_precision)  # first: TensorFlow's strategies need it
    make_deterministic(params.seed)
    train_set = open_split(args.train)
    val_set = open_split(args.val, train_set.class_names)
    checkpoints = run_checkpoints(args.checkpoints, params, train_set, val_set)
    with Live(dir=str(args.history), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        model, result = train(lambda: build_from_params(params, train_set, len(train_set.class_names)),
                              train_set, val_set, params, checkpoints=checkpoints, scope=devices.scope,
                              shard=devices.shard, prune=reporter_from_environment(),
                              sinks=epoch_sinks(live, args.tensorboard if params.tensorboard else None))

    with atomic_directory(args.model_dir) as staging:  # first: nothing after it can lose the trained model
        write_model_folder(model, staging, train_set.class_names, Preprocessing.load(args.preprocessing))
    if onnx_copy_in_training(args.model_dir, params.backend, params.onnx_in_process_mb):
        add_onnx_copy(args.model_dir, args.val, model)  # else stages/onnx_copy.py adds it
        add_heatmap_models(args.model_dir, args.val, model)  # the evaluate stage's heatmaps without TensorFlow
    write_json(args.metrics, summary_metrics(result, model, train_set, val_set, params, devices.summary()))
    with optional_step(f"the architecture diagram {args.diagram}"):
        draw_architecture(model, args.diagram)
    with atomic_directory(args.figures) as staging:
        with optional_step(f"{args.figures / 'training_curves.png'}"):
            training_curves(result.history, result.best_epoch, staging / "training_curves.png")
        with optional_step(f"{args.figures / 'augmented.png'}"):
            preview = augmented_examples(train_set, params.augment, params.seed)
            if preview is not None:
                augmented_grid(*preview, staging / "augmented.png")
    write_json(args.timing, timing_record(result))
    logger.info("%.0f training images per second; epoch timings in %s", result.images_per_second, args.timing)
    if checkpoints is not None:
        checkpoints.clear()  # the run is complete: nothing to resume


if __name__ == "__main__":
    run_stage(main)
