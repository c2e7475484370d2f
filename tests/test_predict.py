"""`imgclf predict`: real files of any size and mode through the real CLI entry point and a trained model."""

from __future__ import annotations

import csv
import json
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from imgclf.cli import main
from tests.helpers import TINY_MODEL_COLOURS, flat_figures, require_shared_dataset, run

pytestmark = pytest.mark.slow  # they train a small model first (a few seconds)


def solid(colour, size, mode="RGB") -> Image.Image:
    rng = np.random.default_rng(sum(colour) + size[0])
    pixels = np.clip(np.array(colour) + rng.integers(-15, 16, size=(size[1], size[0], 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).convert(mode)


@pytest.fixture
def photos(tmp_path):
    """A 12-megapixel JPEG, a PNG whose only content is transparency, a grayscale PNG, a folder with a bad file."""
    solid(TINY_MODEL_COLOURS["red"], (4000, 3000)).save(tmp_path / "big_red.jpg", quality=90)
    # Every pixel fully transparent over hidden black: drawn on white as the pipeline draws it, it is white.
    # (Dropping the alpha channel instead would show black.)
    hidden = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    hidden.save(tmp_path / "transparent.png")
    solid((30, 30, 30), (64, 48), mode="L").save(tmp_path / "dark_gray.png")
    folder = tmp_path / "folder"
    folder.mkdir()
    solid(TINY_MODEL_COLOURS["white"], (50, 50)).save(folder / "white.png")
    solid(TINY_MODEL_COLOURS["black"], (20, 60)).save(folder / "black.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    (folder / "notes.txt").write_text("not an image")
    return tmp_path


def test_predict_prints_the_top_classes_of_each_image(tiny_model_dir, photos, capsys):
    code = main(["predict", str(photos / "big_red.jpg"), str(photos / "transparent.png"),
                 str(photos / "dark_gray.png"), "--model-dir", str(tiny_model_dir), "--top-k", "2"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[1].split()[0] for line in lines] == ["red", "white", "black"]
    first = lines[0].split(": ")[1]
    assert first.count(",") == 1  # two classes shown
    probabilities = [float(part.split()[1]) for part in first.split(", ")]
    assert probabilities == sorted(probabilities, reverse=True) and probabilities[0] > 0.5


def test_a_folder_gives_a_csv_with_unreadable_files_listed_not_fatal(tiny_model_dir, photos, tmp_path):
    output = tmp_path / "predictions.csv"
    code = main(["predict", str(photos / "folder"), "--model-dir", str(tiny_model_dir), "--output", str(output)])
    assert code == 0
    rows = {row["file"].rsplit("/", 1)[1]: row for row in csv.DictReader(output.open())}
    assert set(rows) == {"white.png", "black.jpg", "broken.jpg", "notes.txt"}
    assert rows["white.png"]["predicted"] == "white" and rows["black.jpg"]["predicted"] == "black"
    assert float(rows["white.png"]["confidence"]) > 0.5 and rows["white.png"]["error"] == ""
    assert rows["white.png"]["top_classes"].startswith("white ")
    for bad in ("broken.jpg", "notes.txt"):
        assert rows[bad]["predicted"] == "" and rows[bad]["error"], bad
    assert "cannot identify image file" in rows["notes.txt"]["error"]


def test_preprocessing_comes_from_the_model_folder_not_params(tiny_model_dir, tmp_path, capsys):
    """A wide image, red but for its right quarter: cropped to its centre (as the model's record says) it
    is red; padded (as params.yaml says) it is mostly white bars. The record wins."""
    pixels = np.zeros((16, 64, 3), dtype=np.uint8)
    pixels[:, :40] = TINY_MODEL_COLOURS["red"]
    pixels[:, 40:] = TINY_MODEL_COLOURS["white"]
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    (tmp_path / "params.yaml").write_text("resize:\n  mode: pad\n")  # today's params must not matter
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    assert main(["predict", str(tmp_path / "wide.png"), "--model-dir", str(model_dir)]) == 0
    cropped = capsys.readouterr().out
    assert cropped.split(": ")[1].startswith("red")  # the centre 16x16 of 64 columns: 24..40, all red

    record = json.loads((model_dir / "preprocessing.json").read_text())
    assert record["mode"] == "crop"
    (model_dir / "preprocessing.json").write_text(json.dumps({**record, "mode": "pad"}))
    assert main(["predict", str(tmp_path / "wide.png"), "--model-dir", str(model_dir)]) == 0
    padded = capsys.readouterr().out
    assert padded.split(": ")[1].startswith("white")  # a 16x4 strip between white bars


def test_a_model_with_a_lambda_layer_is_refused(tmp_path, tiny_model_dir, caplog):
    import keras

    inputs = keras.Input((16, 16, 3))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(
        keras.layers.Lambda(lambda x: x / 255.0)(inputs)))
    model_dir = tmp_path / "unsafe"
    shutil.copytree(tiny_model_dir, model_dir)
    keras.Model(inputs, outputs).save(model_dir / "model.keras")
    (model_dir / "model.onnx").unlink()  # as the train stage leaves a model it cannot convert
    solid((200, 30, 30), (16, 16)).save(tmp_path / "x.png")
    assert main(["predict", str(tmp_path / "x.png"), "--model-dir", str(model_dir)]) == 1
    assert "Lambda" in caplog.text and "safe mode" in caplog.text


def test_a_missing_model_says_how_to_make_one(tmp_path, caplog):
    assert main(["predict", str(tmp_path), "--model-dir", str(tmp_path / "nothing")]) == 1
    assert "dvc repro" in caplog.text


def test_the_installed_command_runs(tiny_model_dir, photos):
    result = run(["imgclf", "predict", str(photos / "big_red.jpg"), "--model-dir", str(tiny_model_dir)], photos)
    assert "big_red.jpg: red" in result.stdout


def test_tta_flip_averages_each_image_with_its_mirror(tiny_model_dir, tmp_path, capsys):
    # left half red, right half white, and its mirror: with flip TTA both are the same average
    pixels = np.zeros((16, 16, 3), np.uint8)
    pixels[:, :8] = TINY_MODEL_COLOURS["red"]
    pixels[:, 8:] = TINY_MODEL_COLOURS["white"]
    Image.fromarray(pixels).save(tmp_path / "half.png")
    Image.fromarray(pixels[:, ::-1]).save(tmp_path / "mirror.png")

    def probabilities(*extra: str) -> dict[str, dict[str, float]]:
        assert main(["predict", str(tmp_path / "half.png"), str(tmp_path / "mirror.png"), "--model-dir",
                     str(tiny_model_dir), "--top-k", "3", *extra]) == 0
        return {line.split(": ")[0].rsplit("/", 1)[1]: {pair.split()[0]: float(pair.split()[1])
                                                         for pair in line.split(": ")[1].split(", ")}
                for line in capsys.readouterr().out.splitlines()}

    plain, flipped = probabilities(), probabilities("--tta", "flip")
    # printed with two decimals: equal up to rounding
    assert flipped["half.png"] == pytest.approx(flipped["mirror.png"], abs=0.011)
    for name in plain["half.png"]:
        assert flipped["half.png"][name] == pytest.approx(
            (plain["half.png"][name] + plain["mirror.png"][name]) / 2, abs=0.011)


def predicted_rows(path) -> dict[str, dict[str, float]]:
    """The CSV of `imgclf predict --output`: per file, its top classes' probabilities."""
    return {row["file"]: {pair.split()[0]: float(pair.split()[1]) for pair in row["top_classes"].split("; ")}
            for row in csv.DictReader(path.open())}


@pytest.mark.parametrize("tta", ["none", "flip"])
def test_the_onnx_engine_agrees_with_the_keras_model_on_real_photos(tiny_model_dir, tmp_path, tta):
    """The installed command on real flower photos (JPEGs of every size and orientation): the default
    engine, ONNX Runtime, gives the Keras model's probabilities within the export check's tolerance."""
    import tarfile

    from imgclf.serving.export import TOLERANCE

    with tarfile.open(require_shared_dataset("flowers-photos.tar")) as tar:
        members = [member for member in tar if member.isfile() and member.name.endswith(".jpg")][::40]
        tar.extractall(tmp_path, members=members, filter="data")
    outputs = {}
    for engine in ("auto", "keras"):
        outputs[engine] = tmp_path / f"{engine}.csv"
        result = run(["imgclf", "predict", str(tmp_path / "flowers"), "--model-dir", str(tiny_model_dir),
                      "--engine", engine, "--top-k", "3", "--tta", tta, "--output", str(outputs[engine]), "--verbose"],
                     tmp_path)
        assert f"engine {'onnx' if engine == 'auto' else 'keras'} (" in result.stdout
        assert "start-up" in result.stdout and "whole command" in result.stdout
    fast, keras_rows = predicted_rows(outputs["auto"]), predicted_rows(outputs["keras"])
    assert len(fast) == len(members) == 50
    for file, probabilities in keras_rows.items():
        assert list(fast[file]) == list(probabilities), file  # the same classes in the same order
        for name, probability in probabilities.items():
            assert fast[file][name] == pytest.approx(probability, abs=TOLERANCE + 1e-6), (file, name)


def test_the_evaluate_stage_on_onnx_runtime_agrees_with_keras_on_real_photos(tiny_model_dir, tmp_path):
    """The evaluate stage predicts with model.onnx where the train stage wrote it, else with
    model.keras: on real flower photos both give the same predictions, and metrics within the
    export check's tolerance."""
    import tarfile

    from imgclf.data.dataset import ImageSet, save_image_set
    from imgclf.serving.export import TOLERANCE
    from tests.helpers import PROJECT_ROOT, TINY_MODEL_CLASSES

    with tarfile.open(require_shared_dataset("flowers-photos.tar")) as tar:
        members = [member for member in tar if member.isfile() and member.name.endswith(".jpg")][::25]
        tar.extractall(tmp_path / "photos", members=members, filter="data")
    files = sorted((tmp_path / "photos").rglob("*.jpg"))
    images = np.stack([np.asarray(Image.open(file).convert("RGB").resize((16, 16))) for file in files])
    labels = np.arange(len(files), dtype=np.int32) % len(TINY_MODEL_CLASSES)  # any labels: both engines score them
    for split in ("test", "val"):
        save_image_set(tmp_path / "data" / split, ImageSet(images, labels, tuple(map(str, files)), TINY_MODEL_CLASSES))
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    keras_only = tmp_path / "keras-only"
    shutil.copytree(tiny_model_dir, keras_only)
    (keras_only / "model.onnx").unlink()
    scores = {}
    for name, model_dir in (("onnx", tiny_model_dir), ("keras", keras_only)):
        outputs = tmp_path / name
        run([sys.executable, str(PROJECT_ROOT / "stages/evaluate.py"), "--model-dir", str(model_dir),
             "--test", "data/test", "--val", "data/val", "--metrics", f"{outputs}/evaluate.json",
             "--class-scores", f"{outputs}/class_scores.csv", "--predictions", f"{outputs}/predictions.csv",
             "--roc", f"{outputs}/roc.csv",
             "--precision-recall", f"{outputs}/precision_recall.csv", "--figures", f"{outputs}/figures",
             "--label-issues", f"{outputs}/label_issues.csv"], tmp_path)
        scores[name] = json.loads((tmp_path / name / "evaluate.json").read_text())
        scores[name]["rows"] = list(csv.DictReader((tmp_path / name / "predictions.csv").open()))
    assert len(scores["onnx"]["rows"]) == len(files) == 80
    for fast, slow in zip(scores["onnx"].pop("rows"), scores["keras"].pop("rows"), strict=True):
        assert (fast["file"], fast["predicted"]) == (slow["file"], slow["predicted"])
        assert float(fast["confidence"]) == pytest.approx(float(slow["confidence"]), abs=TOLERANCE)
    fast, slow = flat_figures(scores["onnx"]), flat_figures(scores["keras"])
    assert fast.keys() == slow.keys()
    for key, value in slow.items():
        assert fast[key] == (pytest.approx(value, abs=TOLERANCE) if isinstance(value, float) else value), key


def test_the_onnx_engine_imports_neither_keras_nor_tensorflow(tiny_model_dir, photos):
    script = ("import sys; from imgclf.cli import main; "
              f"code = main(['predict', {str(photos / 'big_red.jpg')!r}, '--model-dir', {str(tiny_model_dir)!r}]); "
              "print('loaded:', sorted(name for name in ('keras', 'tensorflow', 'jax') if name in sys.modules)); "
              "sys.exit(code)")
    result = run([sys.executable, "-c", script], photos)
    assert "big_red.jpg: red" in result.stdout and "loaded: []" in result.stdout


def test_engine_onnx_without_the_file_says_what_to_do(tiny_model_dir, tmp_path, photos, caplog):
    model_dir = tmp_path / "keras-only"
    shutil.copytree(tiny_model_dir, model_dir)
    (model_dir / "model.onnx").unlink()
    assert main(["predict", str(photos / "big_red.jpg"), "--model-dir", str(model_dir), "--engine", "onnx"]) == 1
    assert "--engine keras" in caplog.text and "dvc repro" in caplog.text
    assert main(["predict", str(photos / "big_red.jpg"), "--model-dir", str(model_dir)]) == 0  # auto: Keras
