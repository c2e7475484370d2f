"""A training split bigger than the machine's memory, through resize, one epoch of training, and evaluate.

Synthetic images (small JPEGs, resized up to ``--side``; the figure is about memory) in a scratch
project; the training split holds ``--gigabytes`` of pixels (default: 1.1 times this machine's
memory). The resize and evaluate stages run as their scripts, and so does the train stage's ONNX
copy (stages/onnx_copy.py, its second command); training runs the train stage's own
path (:func:`imgclf.data.dataset.open_split`, then :func:`imgclf.training.loop.train`, whose batches are read
from the shards in each epoch's shuffled order) for one full epoch of a deliberately cheap network
(an 8x8 average pooling, one small convolution), so that the run takes minutes, not hours, while
still reading every image once in a global random order. Prints each step's peak resident memory
(the process tree, sampled every 20 ms) and time. Needs about ``--gigabytes`` of free disk; runs
outside DVC (whose cache would need as much again).

    .venv/bin/python benchmarks/bigger_than_memory.py     # about 15 minutes on 2 cores, 24 GB
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import platform
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import psutil
import simplejpeg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from streaming import REPOSITORY, Side  # noqa: E402
from targets import Targets  # noqa: E402

# One epoch of the train stage's path with a cheap network; writes models/ as the stage does.
CHEAP_TRAINING = textwrap.dedent("""
    import keras
    from pathlib import Path
    from imgclf.data.dataset import open_split
    from imgclf.data.preprocessing import Preprocessing
    from imgclf.modeling.params import TrainParams
    from imgclf.serving.model_folder import write_model_folder
    from imgclf.training.loop import make_deterministic, train

    make_deterministic(0)
    train_split = open_split(Path("data/resized/train"))
    val_split = open_split(Path("data/resized/val"), train_split.class_names)

    def build():
        return keras.Sequential([keras.Input(train_split.image_shape), keras.layers.AveragePooling2D(8),
                                 keras.layers.Rescaling(1 / 255), keras.layers.Conv2D(8, 3, activation="relu"),
                                 keras.layers.GlobalAveragePooling2D(),
                                 keras.layers.Dense(len(train_split.class_names), activation="softmax")])

    model, result = train(build, train_split, val_split, TrainParams(epochs=1, batch_size=64, seed=0))
    Path("models").mkdir(exist_ok=True)
    write_model_folder(model, Path("models"), train_split.class_names,
                       Preprocessing.load(Path("data/resized/preprocessing.json")))
    print("trained", len(train_split), "images at", round(result.epoch_timings[0].train_step_seconds, 1), "s")
""")


class CheapTraining(Side):
    """The stage scripts, but for the train stage's training: CHEAP_TRAINING, then its ONNX copy as ever."""

    def commands(self) -> dict[str, list[list[str]]]:
        commands = super().commands()
        return {**commands, "train": [[sys.executable, "-c", CHEAP_TRAINING], *commands["train"][1:]]}


def tiny_photos(raw: Path, count: int, classes: int = 2) -> list[tuple[str, str]]:
    rng = np.random.default_rng(0)
    files = []
    for index in range(count):
        label = f"class{index % classes}"
        (raw / label).mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
        pixels[..., index % classes] //= 2  # something to learn
        name = f"{label}/{index:07d}.jpg"
        (raw / name).write_bytes(simplejpeg.encode_jpeg(pixels, quality=80))
        files.append((f"data/raw/{name}", label))
    return files


def main() -> int:
    memory_gb = psutil.virtual_memory().total / 2**30
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gigabytes", type=float, default=round(1.1 * memory_gb, 1),
                        help="pixels in the training split (default: 1.1x this machine's memory)")
    parser.add_argument("--side", type=int, default=512, help="image height and width")
    parser.add_argument("--scratch", type=Path, default=None, help="folder for the project (default: a temp dir)")
    args = parser.parse_args()
    image_bytes = args.side * args.side * 3
    train_images = math.ceil(args.gigabytes * 2**30 / image_bytes)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {memory_gb:.1f} GB of memory, "
          f"Python {platform.python_version()}; {train_images:,} training images of {args.side}x{args.side} "
          f"= {train_images * image_bytes / 2**30:.1f} GB of pixels", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="bigger-than-memory-", dir=args.scratch))
    targets = Targets()
    try:
        raw = scratch / "raw"
        counts = {"train": train_images, "val": 500, "test": 2_000}
        files = iter(tiny_photos(raw, sum(counts.values())))
        entries = []
        for subset, count in counts.items():
            for file, label in (next(files) for _ in range(count)):
                digest = hashlib.sha256((raw / file.removeprefix("data/raw/")).read_bytes()).hexdigest()
                entries.append((file, label, subset, digest))
        side = CheapTraining("ours", REPOSITORY, packed_as_npz=False)
        project = side.project(scratch, raw, entries, {"resize.size": [args.side, args.side]})
        lines = []
        for stage in ("resize", "train", "evaluate"):
            seconds, peak = side.run(stage, project)
            verdict = targets.check(f"{stage} under 3 GB", peak < 3 * 1024)
            lines.append(f"{stage:>8}: peak {peak / 1024:.2f} GB, {seconds / 60:.1f} min  "
                         f"[target < 3 GB, far below the {args.gigabytes:.1f} GB split: {verdict}]")
            print(lines[-1], flush=True)
        onnx = project / "models" / "model.onnx"
        verdict = targets.check("the train stage's ONNX copy written", onnx.is_file())
        lines.append(f"models/model.onnx: {'written' if onnx.is_file() else 'MISSING'}, checked on the 500 "
                     f"validation images by the train stage's second command  [{verdict}]")
        shards = sorted((project / "data/resized/train").glob("images-*.npy"))
        lines.append(f"training split: {len(shards)} shards, "
                     f"{sum(path.stat().st_size for path in shards) / 2**30:.1f} GB on disk")
        print("\n".join(lines))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return targets.exit_status()


if __name__ == "__main__":
    sys.exit(main())
