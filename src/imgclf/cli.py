"""The ``imgclf`` command: use what the pipeline made.

    imgclf summary                          the test accuracy of the last run (metrics/evaluate.json)
    imgclf predict photo.jpg                the most probable classes of each image: "dog 0.97, cat 0.03"
    imgclf predict my_folder/ --output predictions.csv
    imgclf predict photo.jpg --tta flip     with the test-time augmentation of evaluate.tta: flip
    imgclf predict photo.jpg --verbose      and where the seconds went (start-up, model, images, prediction)
    imgclf predict photo.jpg --explain heatmaps/
                                            and heatmaps/photo.heatmap.png: where the model saw that class
    imgclf export --format onnx             the model for serving, checked against the Keras model
    imgclf recipe                           the recipes (named sets of params): photos, cifar10, tutorial
    imgclf recipe photos --apply            write the photo recipe's values into params.yaml, then: dvc repro
    imgclf recipe photos --flags | xargs dvc exp run
                                            the same as an experiment
    imgclf unpack data/resized/test test_images/
                                            a packed split as <class>/<file>.png folders, to look at
    imgclf lr-find                          a short run with a rising learning rate: loss against rate
                                            (logs/lr_find.png), and the train.learning_rate to try
    imgclf check-remote                     can the DVC remote be reached and read; if not, what to check
    imgclf report --base origin/main        a Markdown report of what this change did (params, metrics,
                                            figures), to post on a pull request
    imgclf tune                             search the params of tune.yaml with Optuna, each trial a DVC
                                            experiment: the best, its dvc exp apply line, plots in logs/tune/
    imgclf tune --jobs 2 --storage postgresql://tuner@db/studies --push origin
                                            two trials at once, one study shared by the team's machines

``predict`` and ``export`` read the model from ``models/`` (``--model-dir``): the model, its class
names and how its images were resized, all saved by the train stage. ``predict`` runs
``models/model.onnx`` in ONNX Runtime where it is there (``--engine``), without importing TensorFlow.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgclf.modeling.outputs import TTA_MODES
from imgclf.plumbing.errors import PipelineError
from imgclf.plumbing.files import read_json
from imgclf.plumbing.timeline import seconds_since_process_start

if TYPE_CHECKING:  # for the type checker only: the commands import what they use when they run
    from imgclf.data.preprocessing import Preprocessing
    from imgclf.serving.inference import Prediction, PredictionTimes, Unreadable
    from imgclf.serving.model_folder import Classifier
from imgclf.serving.export import FORMATS as EXPORT_FORMATS

logger = logging.getLogger("imgclf")


def summary(metrics_path: Path) -> str:
    if not metrics_path.exists():
        return f"{metrics_path} does not exist yet: run `dvc repro` first."
    metrics = read_json(metrics_path)
    return (f"test accuracy {metrics['accuracy']:.4f} (loss {metrics['loss']:.4f}, "
            f"macro F1 {metrics['macro_f1']:.4f}) on {metrics['test_images']} test images")


def print_summary(args: argparse.Namespace) -> int:
    print(summary(args.metrics))
    return 0


def predict(args: argparse.Namespace) -> int:
    startup = seconds_since_process_start()  # Python, and the imports of imgclf.cli
    began = time.perf_counter()
    from imgclf.serving.inference import PredictionTimes, image_files, predict_files
    from imgclf.serving.model_folder import ModelFolder, load_classifier

    folder = ModelFolder.open(args.model_dir)
    preprocessing, class_names = folder.preprocessing(), folder.class_names
    loading_started = time.perf_counter()
    classifier = load_classifier(args.model_dir, "keras" if args.explain else args.engine)
    loading = time.perf_counter() - loading_started
    times = PredictionTimes()
    predictions, unreadable = predict_files(classifier, class_names, preprocessing, image_files(args.paths),
                                            top_k=min(args.top_k, len(class_names)), batch_size=args.batch_size,
                                            tta=args.tta, times=times)
    if args.explain and predictions:
        _write_heatmaps(classifier, predictions, class_names, preprocessing, args.explain)
    _write_predictions(predictions, unreadable, args.output)
    if args.verbose:
        _log_timings(classifier, startup, time.perf_counter() - began, loading, times,
                     len(predictions) + len(unreadable))
    return _report_what_was_not_predicted(predictions, unreadable, args.paths, args.output)


def _write_heatmaps(classifier: Classifier, predictions: Sequence[Prediction], class_names: Sequence[str],
                    preprocessing: Preprocessing, folder: Path) -> None:
    """``imgclf predict --explain``: where the Keras model saw each file's first class."""
    from imgclf.serving.inference import explain_files
    from imgclf.serving.model_folder import KerasClassifier

    assert isinstance(classifier, KerasClassifier)  # --explain loads the Keras model
    written = explain_files(classifier.model, [Path(found.file) for found in predictions], class_names,
                            [found.top[0][0] for found in predictions], preprocessing, folder)
    logger.info("wrote %d heatmaps (where the model saw its first class) to %s", len(written), folder)


def _write_predictions(predictions: Sequence[Prediction], unreadable: Sequence[Unreadable],
                       output: Path | None) -> None:
    """The predictions as a CSV at ``output``, or one line each on the screen."""
    if output:
        from imgclf.plumbing.files import write_csv
        from imgclf.serving.inference import CSV_COLUMNS, csv_rows

        write_csv(output, CSV_COLUMNS, csv_rows(predictions, unreadable))
        logger.info("wrote %d predictions to %s", len(predictions), output)
    else:
        for prediction in predictions:
            print(f"{prediction.file}: {prediction.describe()}")


def _log_timings(classifier: Classifier, startup: float | None, since_began: float, loading: float,
                 times: PredictionTimes, files: int) -> None:
    """``imgclf predict --verbose``: where the command's seconds went."""
    total = (startup or 0.0) + since_began
    other = since_began - loading - times.reading - times.predicting
    logger.info("engine %s (%s); seconds: start-up %s (Python and imgclf's imports), model %.2f (importing the "
                "engine and loading the model), images %.2f (%d read), prediction %.2f (%d call(s)), other %.2f;"
                " whole command %s", classifier.engine, classifier.path,
                "unknown" if startup is None else f"{startup:.2f}", loading, times.reading, files,
                times.predicting, len(times.per_call), other,
                f"{total:.2f}" if startup is not None else f"{total:.2f} and start-up")


def _report_what_was_not_predicted(predictions: Sequence[Prediction], unreadable: Sequence[Unreadable],
                                   paths: Sequence[Path], output: Path | None) -> int:
    """Warn of the files that could not be read (or that there were none); the command's exit status."""
    if not predictions and not unreadable:
        logger.warning("no files found in %s", ", ".join(map(str, paths)))
        return 1
    for failure in unreadable:
        logger.warning("could not read %s: %s", failure.file, failure.reason)
    if unreadable:
        logger.warning("%d of %d files could not be read%s", len(unreadable), len(unreadable) + len(predictions),
                       f" (listed in {output})" if output else "")
    return 0 if predictions else 1


def export(args: argparse.Namespace) -> int:
    from imgclf.serving.export import export_all
    from imgclf.serving.model_folder import KERAS_FILE

    formats = list(dict.fromkeys(args.format))
    report = export_all(args.model_dir / KERAS_FILE, args.test, formats, args.output)
    for export_format in formats:
        check = report[export_format]
        print(f"{export_format}: {args.output / check['path']} matches the Keras model on {check['images']} "
              f"test images (max |difference| {check['max_abs_difference']:.1e}, "
              f"top-1 agreement {check['top1_agreement']:.2%})")
    return 0


def recipe(args: argparse.Namespace) -> int:
    from imgclf.recipes import apply_to_file, available, load_recipe

    if args.name is None:
        for name in available():
            print(f"{name}: {load_recipe(name).description}")
        return 0
    chosen = load_recipe(args.name)
    if args.flags:
        print(" ".join(chosen.flags()))
    elif args.apply:
        changed = apply_to_file(chosen)
        logger.info("params.yaml: recipe %s set %d values (%s); run dvc repro", chosen.name, len(changed),
                    ", ".join(changed) or "all were already set")
    else:
        print(f"# {chosen.name}: {chosen.description}")
        print(f"dvc exp run {' '.join(chosen.flags())}")
    return 0


def unpack(args: argparse.Namespace) -> int:
    from imgclf.data.dataset import open_split, write_image_folder

    with open_split(args.packed) as split:
        written = write_image_folder(split, args.output)
    logger.info("wrote %d images to %s", written, args.output)
    return 0


def lr_find(args: argparse.Namespace) -> int:
    from imgclf.data.dataset import open_split
    from imgclf.modeling.params import TrainParams
    from imgclf.plumbing.params import load_section
    from imgclf.training.lrfind import draw_sweep, find_learning_rate, sweep_rates

    params = load_section(TrainParams, args.params)
    rates = sweep_rates(args.start, args.end, args.steps)
    with open_split(args.train) as train_split:
        logger.info("lr-find: %s on %d training images, %d batches of %d, rates %.0e to %.0e", params.model,
                    len(train_split), args.steps, params.batch_size, args.start, args.end)
        sweep = find_learning_rate(params, train_split, rates)
    draw_sweep(sweep, args.output)
    logger.info("drew the loss against the learning rate in %s", args.output)
    print(f"suggested train.learning_rate: {sweep.suggestion:.2g} (now {params.learning_rate:g}); try it with:")
    print(f"dvc exp run -S train.learning_rate={sweep.suggestion:.2g}")
    return 0


def check_remote(args: argparse.Namespace) -> int:
    from imgclf.plumbing.remotes import check_remote as ask_remote

    print(ask_remote(Path.cwd(), args.remote).describe())
    return 0


def report(args: argparse.Namespace) -> int:
    from imgclf.reporting.report import write_report

    path = write_report(Path.cwd(), args.output, base=args.base, rev=args.rev)
    logger.info("wrote %s; post it on the pull request with: cml comment create --publish %s", path, path)
    return 0


def tune(args: argparse.Namespace) -> int:
    from imgclf.plumbing.params import read_params_file
    from imgclf.tuning.findings import summary_lines, write_findings
    from imgclf.tuning.search import SearchOptions, run_search
    from imgclf.tuning.settings import load_settings
    from imgclf.tuning.storage import default_url

    settings = load_settings(args.settings, read_params_file(), trials=args.trials)
    options = SearchOptions(storage=args.storage or default_url(Path.cwd()), output=args.output / settings.study,
                            jobs=args.jobs, push=args.push)
    try:
        result = run_search(settings, options)
    except KeyboardInterrupt:
        logger.error("interrupted: the running trials are marked failed; run the same imgclf tune again to go on")
        return 130
    written = write_findings(result.study, options.output)
    logger.info("searched for %.1f minutes; the trials, their logs and Optuna's plots are in %s (%s)",
                result.seconds / 60, options.output, ", ".join(path.name for path in written))
    for line in summary_lines(result.study, str(result.metric), result.workspace_value):
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "predict" and args.explain and args.engine == "onnx":
        parser.error("--explain needs the Keras model's gradients: use --engine keras or auto")
    logging.basicConfig(level=logging.INFO, format="%(levelname)-7s %(message)s")
    try:
        return args.run(args)
    except PipelineError as error:
        logger.error("%s", error)
        return 1


def build_parser() -> argparse.ArgumentParser:
    """``imgclf`` and its commands, each knowing the function that runs it (``args.run``)."""
    parser = argparse.ArgumentParser(prog="imgclf", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_add_summary, _add_predict, _add_export, _add_recipe, _add_unpack, _add_lr_find, _add_check_remote,
                _add_report, _add_tune):
        add(commands)
    return parser


Commands = Any  # what argparse's add_subparsers returns (its class is private)


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = int(text)  # argparse turns a ValueError into "invalid positive_int value"
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


def _add_summary(commands: Commands) -> None:
    summary_parser = commands.add_parser("summary", help="print the test accuracy of the last run")
    summary_parser.add_argument("--metrics", type=Path, default=Path("metrics/evaluate.json"))
    summary_parser.set_defaults(run=print_summary)


def _add_predict(commands: Commands) -> None:
    predict_parser = commands.add_parser("predict", help="classify image files or folders of them")
    predict_parser.add_argument("paths", type=Path, nargs="+", help="image files, or folders to read every file of")
    predict_parser.add_argument("--model-dir", type=Path, default=Path("models"))
    predict_parser.add_argument("--top-k", type=positive_int, default=3, help="how many classes to show per image")
    predict_parser.add_argument("--output", type=Path, help="write a CSV here instead of printing")
    predict_parser.add_argument("--batch-size", type=positive_int, default=64)
    predict_parser.add_argument("--tta", choices=TTA_MODES, default="none",
                                help="test-time augmentation as evaluate.tta: flip averages each image with its mirror")
    predict_parser.add_argument("--engine", choices=("auto", "onnx", "keras"), default="auto",
                                help="onnx: models/model.onnx in ONNX Runtime (starts fast); keras: models/model.keras;"
                                     " auto (default): onnx where the file and onnxruntime are there")
    predict_parser.add_argument("--explain", type=Path, metavar="FOLDER",
                                help="write FOLDER/<name>.heatmap.png per image: where the model saw its class "
                                     "(runs the Keras model)")
    predict_parser.add_argument("--verbose", action="store_true",
                                help="log where the seconds went: start-up, loading the model, reading, predicting")
    predict_parser.set_defaults(run=predict)


def _add_export(commands: Commands) -> None:
    export_parser = commands.add_parser("export", help="export the model for serving, checked on the test images")
    export_parser.add_argument("--format", choices=EXPORT_FORMATS, action="append", required=True,
                               help="repeat for several (saved_model is TF Serving's format)")
    export_parser.add_argument("--model-dir", type=Path, default=Path("models"))
    export_parser.add_argument("--test", type=Path, default=Path("data/resized/test"),
                               help="images to check the export on (default: the test split)")
    export_parser.add_argument("--output", type=Path, default=Path("exports"))
    export_parser.set_defaults(run=export)


def _add_recipe(commands: Commands) -> None:
    recipe_parser = commands.add_parser("recipe", help="list the recipes, or select one by name")
    recipe_parser.add_argument("name", nargs="?", help="a recipe of recipes/ (none: list them)")
    recipe_choice = recipe_parser.add_mutually_exclusive_group()
    recipe_choice.add_argument("--apply", action="store_true", help="write its values into params.yaml")
    recipe_choice.add_argument("--flags", action="store_true",
                               help="print only its -S flags, for: imgclf recipe NAME --flags | xargs dvc exp run")
    recipe_parser.set_defaults(run=recipe)


def _add_unpack(commands: Commands) -> None:
    unpack_parser = commands.add_parser("unpack", help="write a packed split out as folders of PNGs, to look at")
    unpack_parser.add_argument("packed", type=Path, help="a split folder, such as data/resized/test")
    unpack_parser.add_argument("output", type=Path, help="folder to write <class>/<file>.png into (must not exist)")
    unpack_parser.set_defaults(run=unpack)


def _add_lr_find(commands: Commands) -> None:
    lr_parser = commands.add_parser("lr-find", help="suggest train.learning_rate from a short run with a rising rate")
    lr_parser.add_argument("--train", type=Path, default=Path("data/resized/train"),
                           help="the packed training split (default: the resize stage's)")
    lr_parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    lr_parser.add_argument("--start", type=float, default=1e-6, help="the first rate (default 1e-6)")
    lr_parser.add_argument("--end", type=float, default=1.0, help="the last rate (default 1)")
    lr_parser.add_argument("--steps", type=int, default=100, help="batches, one per rate (default 100)")
    lr_parser.add_argument("--output", type=Path, default=Path("logs/lr_find.png"), help="the plot")
    lr_parser.set_defaults(run=lr_find)


def _add_check_remote(commands: Commands) -> None:
    remote_parser = commands.add_parser("check-remote", help="check that the DVC remote can be reached and read")
    remote_parser.add_argument("--remote", "-r", help="a remote's name (default: the default remote)")
    remote_parser.set_defaults(run=check_remote)


def _add_report(commands: Commands) -> None:
    report_parser = commands.add_parser("report", help="a Markdown report of params, metrics and figures vs a base")
    report_parser.add_argument("--base", default="HEAD", help="the revision to compare with (default: HEAD)")
    report_parser.add_argument("--rev", help="the revision or experiment to report on (default: the workspace)")
    report_parser.add_argument("--output", type=Path, default=Path("report"),
                               help="folder for report.md and its figures (default: report/)")
    report_parser.set_defaults(run=report)



def _add_tune(commands: Commands) -> None:
    tune_parser = commands.add_parser("tune", help="search params with Optuna, each trial a DVC experiment")
    tune_parser.add_argument("settings", type=Path, nargs="?", default=Path("tune.yaml"),
                             help="the search file: study, metric, trials, space (default: tune.yaml)")
    tune_parser.add_argument("--trials", type=positive_int, help="trials the study should hold (default: the file's)")
    tune_parser.add_argument("--jobs", type=positive_int, default=1,
                             help="trials at once on this machine, each on its share of the cores (default 1)")
    tune_parser.add_argument("--storage", help="the study's storage, shared by every machine working on it: a "
                                               "database URL (postgresql://user:password@host/db) or a journal file "
                                               "on a shared folder (default: logs/tune/studies.db, this machine)")
    tune_parser.add_argument("--push", metavar="REMOTE",
                             help="dvc exp push each finished trial to this git remote (its data to the DVC remote)")
    tune_parser.add_argument("--output", type=Path, default=Path("logs/tune"),
                             help="folder for each study's trial logs, table and plots (default: logs/tune)")
    tune_parser.set_defaults(run=tune)


if __name__ == "__main__":
    sys.exit(main())
