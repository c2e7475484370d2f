"""Test helpers: a temporary git + DVC repository holding a copy of the project, the real ``dvc``
CLI run inside it, tiny image folders written as real files, and the real datasets in shared/."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from ruamel.yaml import YAML

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = PROJECT_ROOT.parent / "shared" / "datasets"
PROJECT_FILES = ("dvc.yaml", "params.yaml", "recipes", "stages", "src")


def command_env() -> dict[str, str]:
    """The environment for subprocesses: this interpreter's venv first on PATH, quiet TensorFlow."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.setdefault("GIT_AUTHOR_NAME", "test")
    env.setdefault("GIT_AUTHOR_EMAIL", "test@example.com")
    env.setdefault("GIT_COMMITTER_NAME", "test")
    env.setdefault("GIT_COMMITTER_EMAIL", "test@example.com")
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def run(args: Sequence[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command; on an unexpected exit code fail with everything it printed."""
    result = subprocess.run(list(args), cwd=cwd, env=command_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout[-6000:]}")
    return result


def run_line(shell: str, script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A command line through ``shell -c``, as written; what it prints (stdout and stderr together)
    is read from a file, as a terminal takes it, not from a pipe: a process that the line leaves
    running and that inherits its stderr (`dvc queue start`'s workers, until the queue has been
    empty a while, or for good where one misses its shutdown) would hold a pipe open, and the caller
    waiting on it."""
    with tempfile.TemporaryFile("w+") as printed:
        result = subprocess.run([shell, "-c", script], cwd=cwd, env=env, text=True, stdout=printed,
                                stderr=subprocess.STDOUT, check=False)
        printed.seek(0)
        result.stdout = printed.read()
    return result


ALARMING = re.compile(r"\b(ERROR|WARNING|Error|Warning)\b|^[EW]\d{4} ", re.MULTILINE)


def on_jax(imports: str, expression: str) -> typing.Any:
    """The value of ``expression`` (JSON-serialisable) evaluated after ``imports`` in a fresh Python
    process on Keras' JAX backend: a test's own function run as JAX runs it, in this checkout."""
    script = (f"import json, sys; sys.path.insert(0, '.'); import keras; {imports}; "
              f"print(json.dumps([keras.backend.backend(), {expression}]))")
    result = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            env={**command_env(), "KERAS_BACKEND": "jax"}, check=True)
    backend, value = json.loads(result.stdout.strip().splitlines()[-1])
    assert backend == "jax", backend
    return value


def alarming_lines(output: str) -> list[str]:
    """The lines of a run's output that say ERROR or WARNING (in words, or as absl's E0000/W0000): a
    good run of the default pipeline prints none (README: a good run is quiet)."""
    return [line for line in output.splitlines() if ALARMING.search(line)]


def skip_unless_ci(message: str) -> typing.NoReturn:
    """Skip a test whose tool this machine lacks; under CI, where `make test` installs it, fail instead."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def global_dtype_policy(name: str) -> Iterator[None]:
    """Keras' global dtype policy ``name`` (``mixed_bfloat16``) for the block, as the train stage sets
    ``train.mixed_precision`` for its process; the one before it after."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` unwritable for the block: its mode, or, for root (whom modes do not stop),
    the immutable flag (``chattr +i``). Skips where neither can be set (fails under CI)."""
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(mode)
        return
    flagged = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True, check=False)
    if flagged.returncode != 0:
        skip_unless_ci(f"cannot make {folder} read-only for root (chattr +i: {flagged.stderr.strip()})")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def make_project(destination: Path, checkout: Path = PROJECT_ROOT, *, heatmaps: bool = True) -> Path:
    """A fresh git + DVC repository with a copy of the pipeline (no outputs), committed.

    ``checkout`` is the source tree to copy: this one, or (for a benchmark's baseline) a git worktree
    of an older commit. ``heatmaps=False`` sets ``evaluate.heatmaps: false``, for the tests that do
    not look at the heatmap galleries: each evaluate run then imports no Keras, about 7 s of a
    tiny run's 30 s of CPU (the tests that draw them, the memory guard and the quiet run keep them)."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = checkout / name
        if not source.exists() and checkout != PROJECT_ROOT:
            continue  # an older commit, from before recipes/ (a benchmark's baseline)
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, destination / name)
    run(["git", "init", "-q"], destination)
    run(["dvc", "init", "-q"], destination)
    shutil.copy2(checkout / ".dvc" / "config", destination / ".dvc" / "config")  # the project's DVC settings
    # plot templates: class_curves.json, and offline.html that `make setup` writes (this checkout's)
    shutil.copytree(PROJECT_ROOT / ".dvc" / "plots", destination / ".dvc" / "plots")
    if not heatmaps:
        set_params(destination, **{"evaluate.heatmaps": False})
    run(["git", "add", "-A"], destination)
    run(["git", "commit", "-qm", "pipeline"], destination)
    return destination


# What a team shares through a DVC remote: a pull must bring these back byte for byte.
SHARED_OUTPUTS = ("models", "metrics", "data/resized", "data/split.csv")


def digests(root: Path, names: tuple[str, ...] = SHARED_OUTPUTS) -> dict[str, str]:
    """SHA-256 of every file under ``names`` in ``root``, by relative path."""
    found = {}
    for name in names:
        top = root / name
        for path in sorted([top] if top.is_file() else top.rglob("*")):
            if path.is_file():
                found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def stage_command(name: str) -> list[str]:
    """The (first) command of stage ``name`` exactly as dvc.yaml runs it, split into arguments: the
    stage's script (the train stage's second command, its ONNX copy, is left out)."""
    import shlex

    command = YAML(typ="safe").load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"][name]["cmd"]
    return shlex.split(command[0] if isinstance(command, list) else command)


def flat_figures(metrics: dict, prefix: str = "") -> dict:
    """``{"images": {"train": 9}}`` as ``{"images.train": 9}``: one entry per column of `dvc exp show`."""
    figures = {}
    for key, value in metrics.items():
        figures.update(flat_figures(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
    return figures


def parse_settings(items: Sequence[str]) -> dict[str, object]:
    """``["train.cutmix=1.0", "train.epochs=30"]`` as dotted params, each value read as YAML, the way
    ``dvc exp run -S`` reads it (for :func:`set_params`)."""
    settings = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise ValueError(f"{item!r} is not KEY=VALUE, e.g. train.cutmix=1.0")
        settings[key] = YAML(typ="safe").load(value)
    return settings


def set_params(repo: Path, **values: object) -> None:
    """Set dotted params, e.g. set_params(repo, **{"train.epochs": 2}), keeping the file's comments."""
    yaml = YAML()
    path = repo / "params.yaml"
    document = yaml.load(path.read_text())
    for dotted, value in values.items():
        *parents, key = dotted.split(".")
        section = document
        for parent in parents:
            section = section[parent]
        section[key] = value
    with open(path, "w") as handle:
        yaml.dump(document, handle)


def write_image_folder(root: Path, classes: Sequence[str] = ("red", "green", "blue"),
                       per_class: int = 20, size: int = 24, seed: int = 0) -> Path:
    """Write ``root/<class>/<n>.(png|jpg)``: noisy images whose dominant colour is the class."""
    rng = np.random.default_rng(seed)
    for class_index, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(per_class):
            pixels = rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8)
            pixels[..., class_index % 3] += 160
            if class_index >= 3:  # more than three classes: stripes tell the next three apart
                pixels[:: 2 + class_index // 3] = 255
            image = Image.fromarray(pixels)
            if number % 2:
                image.save(folder / f"{number:03d}.jpg", quality=95)
            else:
                image.save(folder / f"{number:03d}.png")
    return root


def synthetic_photos(root: Path, count: int, classes: int = 3, size: int = 256) -> list[Path]:
    """``count`` ``size`` x ``size`` JPEGs in ``root/class<k>/``, the classes taking turns: smooth colour
    fields with noise, so that they compress like photos. Files already there are kept, so a smaller
    set is the start of a larger one. Returns the files in the order written."""
    import simplejpeg

    rng = np.random.default_rng(0)
    rows, columns = np.mgrid[0:size, 0:size].astype(np.float32) / 255
    files = []
    for index in range(count):
        folder = root / f"class{index % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        colour = rng.uniform(0, 255, size=(3, 3))
        pixels = (colour[0] * rows[..., None] + colour[1] * columns[..., None] + colour[2] * (1 - rows[..., None])) / 2
        pixels = np.clip(pixels + rng.normal(0, 12, size=(size, size, 3)), 0, 255).astype(np.uint8)
        path = folder / f"{index:06d}.jpg"
        if not path.exists():
            path.write_bytes(simplejpeg.encode_jpeg(pixels, quality=90))
        files.append(path)
    return files


def require_shared_dataset(name: str) -> Path:
    """The path of a real dataset in ../shared/datasets; skip if absent, fail if REQUIRE_REAL_DATA=1."""
    path = SHARED_DATASETS / name
    if not path.exists():
        message = f"real data {path} is absent (CI provides ../shared/datasets beside the project)"
        if os.environ.get("REQUIRE_REAL_DATA") == "1":
            pytest.fail(message + ", and REQUIRE_REAL_DATA=1")
        pytest.skip(message)
    return path


CIFAR10_ARCHIVE = "cifar10-jpg.tar.gz"


def extract_cifar10_subset(destination: Path, train_per_class: int, test_per_class: int) -> Path:
    """Unpack the first images of each class of the real CIFAR-10 JPEGs: ``<dest>/{train,test}/<class>/``."""
    import tarfile

    archive = require_shared_dataset(CIFAR10_ARCHIVE)
    limits = {"train": train_per_class, "test": test_per_class}

    def wanted(member: tarfile.TarInfo) -> bool:
        parts = Path(member.name).parts  # cifar10/<split>/<class>/NNNN.jpg
        return (member.isfile() and len(parts) == 4 and parts[1] in limits
                and int(Path(parts[3]).stem) < limits[parts[1]])

    with tarfile.open(archive) as tar:
        tar.extractall(destination, members=(m for m in tar if wanted(m)), filter="data")
    return destination / "cifar10"


# --- archives in the official layouts, built by the tests --------------------------------------

def cifar_pixels(index: int) -> np.ndarray:
    """A recognisable image for record ``index``, channel-planar (3, 32, 32) as CIFAR stores it."""
    channel, row, column = np.indices((3, 32, 32))
    return ((channel * 80 + row * 3 + column + index) % 256).astype(np.uint8)


def write_cifar_archive(path: Path, name: str, train_per_batch: int, test_count: int) -> Path:
    """A tar.gz in the official binary layout of ``cifar10`` or ``cifar100``; labels cycle over classes."""
    import io
    import tarfile

    if name == "cifar10":
        folder, classes = "cifar-10-batches-bin", [f"class{i}" for i in range(10)]
        batches = {f"data_batch_{i}.bin": train_per_batch for i in range(1, 6)} | {"test_batch.bin": test_count}
        names = {"batches.meta.txt": "\n".join(classes) + "\n\n"}
    else:
        folder = "cifar-100-binary"
        batches = {"train.bin": train_per_batch, "test.bin": test_count}
        names = {"fine_label_names.txt": "\n".join(f"fine{i}" for i in range(100)) + "\n",
                 "coarse_label_names.txt": "\n".join(f"coarse{i}" for i in range(20)) + "\n"}
    files: dict[str, bytes] = {key: value.encode() for key, value in names.items()}
    index = 0
    for batch, count in batches.items():
        records = bytearray()
        for _ in range(count):
            if name == "cifar10":
                records += bytes([index % 10])
            else:
                records += bytes([index % 20, index % 100])  # coarse, fine
            records += cifar_pixels(index).tobytes()
            index += 1
        files[batch] = bytes(records)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for member_name, content in files.items():
            info = tarfile.TarInfo(f"{folder}/{member_name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


def jpeg_bytes(colour: tuple[int, int, int], size: int = 24, seed: int = 0) -> bytes:
    import io

    pixels = np.random.default_rng(seed).integers(0, 60, size=(size, size, 3), dtype=np.uint8)
    pixels += np.array(colour, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_dogs_vs_cats_zip(path: Path, per_class: int) -> Path:
    """Kaggle's dogs-vs-cats layout: a zip holding train.zip (cat.N.jpg, dog.N.jpg), an unlabelled
    test1.zip (N.jpg) and sampleSubmission.csv."""
    import io
    import zipfile

    def zipped(entries: dict[str, bytes]) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, content in entries.items():
                archive.writestr(name, content)
        return buffer.getvalue()

    train = {f"train/{animal}.{n}.jpg": jpeg_bytes(colour, seed=n)
             for animal, colour in (("cat", (180, 40, 40)), ("dog", (40, 40, 180))) for n in range(per_class)}
    test1 = {f"test1/{n}.jpg": jpeg_bytes((100, 100, 100), seed=n) for n in range(1, 6)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zipped({"train.zip": zipped(train), "test1.zip": zipped(test1),
                             "sampleSubmission.csv": b"id,label\n1,0\n"}))
    return path


# --- a local HTTP server with scripted failures --------------------------------------------------

class FileServer:
    """Serve one payload on 127.0.0.1, honouring Range requests, with scripted misbehaviour.

    ``drop_first``: the first response stops halfway and the connection closes.
    ``ignore_range``: always answer 200 with the whole file. ``status``: answer every request with it.
    ``requests`` records each request's Range header (None when absent).
    """

    def __init__(self, payload: bytes, drop_first: bool = False, ignore_range: bool = False,
                 status: int | None = None) -> None:
        import http.server
        import threading

        self.payload, self.drop_first, self.ignore_range, self.status = payload, drop_first, ignore_range, status
        self.requests: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                server.requests.append(self.headers.get("Range"))
                if server.status is not None:
                    self.send_error(server.status)
                    return
                start = 0
                range_header = self.headers.get("Range")
                if range_header and not server.ignore_range:
                    start = int(range_header.removeprefix("bytes=").split("-")[0])
                body = server.payload[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.drop_first and len(server.requests) == 1:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


TINY_MODEL_CLASSES = ("black", "white", "red")
TINY_MODEL_COLOURS = {"black": (20, 20, 20), "white": (235, 235, 235), "red": (220, 30, 30)}


def tiny_model_images(count_per_class: int, seed: int, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Noisy 16x16 uint8 images of the tiny model's classes, and their labels."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, name in enumerate(TINY_MODEL_CLASSES):
        for _ in range(count_per_class):
            noise = rng.integers(-20, 21, size=(size, size, 3))
            images.append(np.clip(np.array(TINY_MODEL_COLOURS[name]) + noise, 0, 255).astype(np.uint8))
            labels.append(label)
    return np.stack(images), np.array(labels, dtype=np.int32)


def train_tiny_model(folder: Path) -> Path:
    """Train simple_cnn on the tiny classes and save it as the train stage does (the model folder with
    its ONNX copy); return the folder."""
    from imgclf.data.dataset import ImageSet, save_image_set
    from imgclf.data.preprocessing import Preprocessing
    from imgclf.modeling.models import build_model
    from imgclf.modeling.params import AugmentParams, TrainParams
    from imgclf.serving.model_folder import add_onnx_copy, write_model_folder
    from imgclf.training.loop import compile_model, make_deterministic

    make_deterministic(0)
    images, labels = tiny_model_images(count_per_class=20, seed=0)
    model = build_model("simple_cnn", (16, 16, 3), len(TINY_MODEL_CLASSES), augment=AugmentParams(horizontal_flip=True),
                        seed=0)
    compile_model(model, TrainParams(learning_rate=0.003))
    model.fit(images, labels, epochs=8, batch_size=16, verbose=0)
    write_model_folder(model, folder, TINY_MODEL_CLASSES, Preprocessing(size=(16, 16), mode="crop",
                                                                         max_megapixels=200.0))
    check_split = folder.parent / f"{folder.name}-check"
    save_image_set(check_split, ImageSet(images, labels.astype(np.int32), tuple(map(str, range(len(labels)))),
                                         TINY_MODEL_CLASSES))
    assert add_onnx_copy(folder, check_split) is not None  # model.onnx, for `imgclf predict`
    return folder


CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
# Appended to a copy of a `dvc plots` page: once the page has loaded and its charts had time to draw,
# it writes what was drawn into <pre id="probe">: per chart the SVG marks, per image its pixel width.
PAGE_PROBE = """<script>
window.addEventListener("load", function () { setTimeout(function () {
  var charts = Array.from(document.querySelectorAll(".vega-embed")).map(function (chart) {
    var lines = Array.from(chart.querySelectorAll("g.mark-line path")).filter(function (path) {
      return (path.getAttribute("d") || "").indexOf("L") >= 0;  // a drawn line has segments
    });
    return {id: chart.id, lines: lines.length, cells: chart.querySelectorAll("g.mark-rect path").length};
  });
  var images = Array.from(document.querySelectorAll("img")).map(function (image) {
    return {src: image.getAttribute("src"), width: image.naturalWidth};
  });
  var errors = Array.from(document.querySelectorAll(".plot-error")).map(function (e) { return e.textContent; });
  var probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({charts: charts, images: images, errors: errors});
  document.body.appendChild(probe);
}, 2000); });
</script>"""


def chromium_or_skip() -> str:
    """Debian's Chromium; skip (fail under CI) where it is not installed."""
    path = shutil.which("chromium")
    if path is None:
        skip_unless_ci("Chromium is not installed: `make test` installs Debian's chromium package where it can "
                       "(as root)")
    return path


def render_in_browser(page: Path, screenshot: Path) -> dict:
    """Open a `dvc plots` page in headless Chromium; return what it drew, and save a screenshot."""
    import html
    import re

    chromium = chromium_or_skip()
    head, tail = page.read_text(encoding="utf-8").rsplit("</body>", 1)
    probed = page.with_name("probed.html")  # beside the page, so its static/ images resolve
    probed.write_text(head + PAGE_PROBE + "</body>" + tail, encoding="utf-8")
    profile = page.parent / ".chromium-profile"
    common = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=30000"]
    dom = subprocess.run([*common, "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=180)
    subprocess.run([*common, "--window-size=1400,4000", f"--screenshot={screenshot}", page.as_uri()],
                   capture_output=True, timeout=180, check=True)
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, f"the page never finished drawing:\n{dom.stderr[-3000:]}"
    return json.loads(html.unescape(found.group(1)))
