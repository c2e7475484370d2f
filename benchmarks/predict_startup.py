"""How long one `imgclf predict photo.jpg` takes, against `python -c "import tensorflow"` alone.

    .venv/bin/python benchmarks/predict_startup.py      # about 3 minutes; needs ../shared/datasets

A ``fast_cnn`` model for 64x64 photos (the photo recipe's network; its weights do not matter for
the time) is saved as the train stage saves it: ``model.keras`` and ``model.onnx``, checked against
each other. Then, each in a fresh process, taking turns, ``--repeats`` times: ``python -c "import
tensorflow"``, ``imgclf predict <a real flower photo> --verbose`` (the default engine, ONNX
Runtime) and the same with ``--engine keras`` (today's path). Each command's wall time is measured
from outside; the median counts. The files are in the page cache after the first round (there is
no dropping it here without root), which helps every command alike. **Target: the default
`imgclf predict` in no more time than importing TensorFlow alone.**

The last line is the ratio of the two medians.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "datasets" / "flowers-photos.tar"
sys.path.insert(0, str(ROOT))

from targets import Targets  # noqa: E402  (benchmarks/targets.py, beside this script)

from tests.helpers import command_env  # noqa: E402


def save_photo_model(folder: Path) -> None:
    """An untrained fast_cnn for 64x64 photos, saved as the train stage saves one (in a subprocess, so
    that this process never imports TensorFlow)."""
    script = f"""
import numpy as np
from pathlib import Path
from imgclf.data.dataset import ImageSet, save_image_set
from imgclf.data.preprocessing import Preprocessing
from imgclf.modeling.models import build_model
from imgclf.serving.model_folder import add_onnx_copy, write_model_folder
folder = Path({str(folder)!r})
classes = ("daisy", "dandelion", "roses", "sunflowers", "tulips")
model = build_model("fast_cnn", (64, 64, 3), len(classes), seed=0)
write_model_folder(model, folder, classes, Preprocessing(size=(64, 64), mode="stretch", max_megapixels=200.0))
images = np.random.default_rng(0).integers(0, 256, (64, 64, 64, 3), dtype=np.uint8)
save_image_set(folder.parent / "check", ImageSet(images, np.zeros(64, np.int32), tuple(map(str, range(64))), classes))
assert add_onnx_copy(folder, folder.parent / "check") is not None
"""
    folder.mkdir(parents=True)
    result = subprocess.run([sys.executable, "-c", script], env=command_env(), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    if result.returncode != 0:
        sys.exit(f"saving the model failed:\n{result.stdout[-3000:]}")


def timed(args: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=command_env(), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{result.stdout[-3000:]}")
    return seconds, result.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not ARCHIVE.exists():
        sys.exit(f"{ARCHIVE} is missing: this benchmark needs the real flower photos in ../shared/datasets.")
    targets = Targets()
    with tempfile.TemporaryDirectory(prefix="predict-startup-") as scratch_name:
        scratch = Path(scratch_name)
        with tarfile.open(ARCHIVE) as tar:
            member = next(member for member in tar if member.isfile() and member.name.endswith(".jpg"))
            tar.extractall(scratch, members=[member], filter="data")
        photo = scratch / member.name
        model_dir = scratch / "models"
        save_photo_model(model_dir)
        imgclf = str(Path(sys.executable).parent / "imgclf")
        commands = {
            "python -c 'import tensorflow'": [sys.executable, "-c", "import tensorflow"],
            "imgclf predict (onnx, the default)": [imgclf, "predict", str(photo), "--model-dir", str(model_dir),
                                                   "--verbose"],
            "imgclf predict --engine keras": [imgclf, "predict", str(photo), "--model-dir", str(model_dir),
                                              "--engine", "keras", "--verbose"],
        }
        seconds: dict[str, list[float]] = {name: [] for name in commands}
        logs: dict[str, str] = {}
        for _ in range(args.repeats):
            for name, command in commands.items():
                elapsed, logs[name] = timed(command, scratch)
                seconds[name].append(elapsed)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    for name, values in seconds.items():
        print(f"{name}: median {medians[name]:.2f} s ({', '.join(f'{value:.2f}' for value in values)})")
        split = re.search(r"engine .*", logs[name])
        if split:
            print(f"  --verbose: {split.group(0)}")
    ratio = medians["imgclf predict (onnx, the default)"] / medians["python -c 'import tensorflow'"]
    print(f"imgclf predict / import tensorflow: {ratio:.2f}x (target <= 1.0x): "
          f"{targets.check('predict in no more time than importing TensorFlow', ratio <= 1.0)}; "
          f"--engine keras: {medians['imgclf predict --engine keras'] / medians[next(iter(medians))]:.2f}x")
    print(f"predict / import tensorflow: {ratio:.2f}")
    return targets.exit_status()


if __name__ == "__main__":
    sys.exit(main())
