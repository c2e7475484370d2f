"""Real Keras training on tiny in-memory data: best epoch, determinism, resume, schedules,
plateaus, early stopping, class weights, label smoothing, fine-tuning, DVCLive and TensorBoard."""

import csv
import dataclasses
import statistics

import keras
import numpy as np
import pytest
from dvclive import Live

from imgclf.data.dataset import ImageSet
from imgclf.modeling.devices import describe_cpu, emulated_bfloat16_warning, has_bf16_units, resolve_precision
from imgclf.modeling.models import BACKBONE_LAYER, build_model
from imgclf.modeling.optim import (
    OneCycle,
    SparseCategoricalCrossentropyWithSmoothing,
    balanced_class_weights,
    learning_rate_schedule,
    make_optimizer,
)
from imgclf.modeling.params import FineTuneParams, TrainParams
from imgclf.training.checkpoints import Checkpoints, fingerprint
from imgclf.training.loop import (
    TrainingError,
    epoch_order,
    epochs_without_improvement,
    make_deterministic,
    should_cut_rate,
    should_stop,
    train,
)
from imgclf.training.sinks import LiveSink, TensorBoardSink
from imgclf.training.summary import summary_metrics, timing_record


def colour_set(count: int, seed: int, num_classes: int = 3, side: int = 8) -> ImageSet:
    """Images whose dominant colour channel is their class: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count, dtype=np.int32) % num_classes
    images = rng.integers(0, 100, size=(count, side, side, 3), dtype=np.uint8)
    images[np.arange(count), :, :, labels % 3] += 150
    return ImageSet(images, labels, tuple(f"{i}.png" for i in range(count)),
                    tuple(f"class{i}" for i in range(num_classes)))


def train_once(params: TrainParams, num_classes: int = 3, sinks=(), checkpoints=None, val_set=None, side=8):
    make_deterministic(params.seed)
    train_set = colour_set(48, 0, num_classes, side)
    val_set = val_set or colour_set(24, 1, num_classes, side)

    def build():
        return build_model(params.model, (side, side, 3), num_classes, seed=params.seed, weights=None,
                           backbone=params.backbone)

    model, result = train(build, train_set, val_set, params, sinks=sinks, checkpoints=checkpoints)
    return model, result, train_set, val_set


def assert_same_weights(first: keras.Model, second: keras.Model) -> None:
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_same_seed_same_weights():
    params = TrainParams(epochs=2, batch_size=8, seed=5)
    assert_same_weights(train_once(params)[0], train_once(params)[0])


@pytest.mark.slow
@pytest.mark.parametrize("num_classes", [2, 3])
def test_training_learns_and_reports_the_best_epoch(num_classes):
    params = TrainParams(epochs=6, batch_size=8, learning_rate=0.01, seed=0)
    model, result, train_set, val_set = train_once(params, num_classes)
    summary = summary_metrics(result, model, train_set, val_set, params, {"device": "cpu"})
    assert summary["epochs"] == 6 and 1 <= summary["best_epoch"] <= 6
    assert summary["val_loss"] == round(min(result.history["val_loss"]), 6)
    assert summary["val_accuracy"] > 0.9
    assert summary["parameters"] == model.count_params()
    assert summary["batch_size"] == 8 and summary["device"] == "cpu"
    timing = timing_record(result)
    # the speed is the median epoch's, the first (which compiles) left out
    rates = [len(train_set) / epoch["train_step_seconds"] for epoch in timing["per_epoch"][1:]]
    assert result.images_per_second == round(statistics.median(rates), 1)
    assert [epoch["epoch"] for epoch in timing["per_epoch"]] == [1, 2, 3, 4, 5, 6]
    for epoch in timing["per_epoch"]:  # the epoch's wall time, and its steps within it
        assert epoch["seconds"] >= epoch["train_step_seconds"] + epoch["validation_seconds"]
        assert epoch["train_step_seconds"] > 0 and epoch["validation_seconds"] > 0
        assert epoch["overhead_ratio"] == round(
            epoch["seconds"] / (epoch["train_step_seconds"] + epoch["validation_seconds"]), 3) >= 1
    assert not set(timing) & set(summary)  # a timing never lands in metrics/train.json (dvc.lock)


class SimulatedInterruptError(Exception):
    pass


class InterruptAfter:
    """A sink that stops the run once epoch ``epoch`` is logged (its checkpoint is not yet written)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def log_epoch(self, epoch, record):
        if epoch == self.epoch:
            raise SimulatedInterruptError


@pytest.mark.slow
def test_an_interrupted_run_resumes_from_its_checkpoint_and_ends_with_the_same_weights(tmp_path):
    params = TrainParams(epochs=4, batch_size=8, seed=3, schedule="cosine", dropout_rate=0.3, resume=True)
    uninterrupted, whole, *_ = train_once(params)
    key = fingerprint(params, colour_set(48, 0))
    with pytest.raises(SimulatedInterruptError):
        train_once(params, sinks=[InterruptAfter(3)], checkpoints=Checkpoints(tmp_path, key))
    assert (tmp_path / "epoch-0002" / "model.keras").is_file()
    replayed = []

    class Recorder:
        def log_epoch(self, epoch, record):
            replayed.append(epoch)

    resumed, result, *_ = train_once(params, sinks=[Recorder()], checkpoints=Checkpoints(tmp_path, key))
    assert replayed == [1, 2, 3, 4]  # the first two epochs' curves again, then the two trained ones
    assert_same_weights(resumed, uninterrupted)
    for name in ("loss", "val_loss", "accuracy", "learning_rate"):
        assert result.history[name] == whole.history[name]
    # other params: the checkpoint is not used
    assert Checkpoints(tmp_path, "another run").load() is None


@pytest.mark.slow
def test_dvclive_gets_curves_and_tensorboard_gets_event_files(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    params = TrainParams(epochs=3, batch_size=16, seed=0)
    with Live(dir=str(tmp_path / "history"), dvcyaml=None, save_dvc_exp=False) as live:
        train_once(params, sinks=[LiveSink(live), TensorBoardSink(tmp_path / "tensorboard")])
    for split in ("train", "val"):
        for metric in ("loss", "accuracy"):
            with open(tmp_path / "history" / "plots" / "metrics" / split / f"{metric}.tsv") as handle:
                rows = list(csv.DictReader(handle, delimiter="\t"))
            assert [row["step"] for row in rows] == ["1", "2", "3"]
            assert set(rows[0]) == {"step", metric}  # no timestamps: reruns give identical files
        events = EventAccumulator(str(tmp_path / "tensorboard" / split))
        events.Reload()
        assert "epoch_loss" in events.Tags()["tensors"]
        assert [event.step for event in events.Tensors("epoch_loss")] == [1, 2, 3]


@pytest.mark.slow
def test_describe_cpu_names_the_model_and_the_widest_vector_instructions():
    flags = "fpu sse2 avx avx2 fma avx512f avx512_vnni"
    assert describe_cpu(f"processor : 0\nmodel name : AMD EPYC\nflags : {flags}\n") == "cpu (AMD EPYC, AVX-512 VNNI)"
    assert describe_cpu("model name : Old\nflags : sse2 avx\n") == "cpu (Old, AVX)"
    assert describe_cpu("") == "cpu"


@pytest.mark.parametrize(("flags", "bf16_units"), [("avx2 avx512f avx512_bf16", True),  # AMD EPYC (Zen 4)
                                                   ("avx512f avx512_bf16 amx_bf16 amx_tile", True),  # Xeon, AMX
                                                   ("avx2 fma avx512f avx512_vnni", False), ("sse2 avx", False)])
def test_auto_precision_is_bfloat16_on_a_cpu_with_bf16_units_and_float32_without(flags, bf16_units):
    cpuinfo = f"processor : 0\nmodel name : Some CPU\nflags : {flags}\n"
    assert has_bf16_units(cpuinfo) is bf16_units
    assert resolve_precision("auto", 0, cpu_bf16_units=has_bf16_units(cpuinfo)) == \
        ("mixed_bfloat16" if bf16_units else "float32")
    assert resolve_precision("auto", 1, cpu_bf16_units=bf16_units) == "mixed_float16"  # a GPU: its tensor cores
    assert resolve_precision("off", 0, cpu_bf16_units=bf16_units) == "float32"  # a setting is kept as it is
    assert has_bf16_units("") is False  # unreadable: float32, never an emulated bfloat16


def test_bfloat16_on_a_cpu_without_bf16_units_is_warned_about_and_auto_is_named():
    device = "cpu (AMD EPYC, AVX2)"
    warning = emulated_bfloat16_warning("mixed_bfloat16", 0, cpu_bf16_units=False, device=device)
    assert warning is not None
    assert "train.mixed_precision: auto" in warning and device in warning
    assert emulated_bfloat16_warning("mixed_bfloat16", 0, cpu_bf16_units=True, device=device) is None  # the units
    assert emulated_bfloat16_warning("mixed_bfloat16", 1, cpu_bf16_units=False, device=device) is None  # a GPU
    assert emulated_bfloat16_warning("float32", 0, cpu_bf16_units=False, device=device) is None


def test_a_diverging_run_says_to_lower_the_learning_rate():
    params = TrainParams(epochs=1, batch_size=8, learning_rate=1e10, optimizer="sgd", seed=0)
    with pytest.raises(TrainingError, match=r"lower train\.learning_rate \(now 1e\+10\)"):
        train_once(params)


@pytest.mark.slow
def test_early_stopping_and_reduce_on_plateau_in_a_real_run():
    # validation labels that contradict training: val_loss worsens as the model learns
    contradicting = colour_set(24, 1)
    contradicting = dataclasses.replace(contradicting, labels=(contradicting.labels + 1) % 3)
    params = TrainParams(epochs=12, batch_size=8, learning_rate=0.01, seed=0, early_stopping_patience=3,
                         reduce_lr_patience=2, reduce_lr_factor=0.5)
    _, result, *_ = train_once(params, val_set=contradicting)
    epochs = len(result.history["loss"])
    assert epochs < 12 and epochs - result.best_epoch == 3
    rates = result.history["learning_rate"]
    assert rates[0] == pytest.approx(0.01) and rates[-1] == pytest.approx(0.005)


@pytest.mark.slow
def test_fine_tuning_trains_the_backbone_in_a_second_phase_at_its_own_rate():
    params = TrainParams(model="transfer", backbone="mobilenet_v2", weights="none", epochs=1, batch_size=8,
                         fine_tune=FineTuneParams(epochs=1, layers=5, learning_rate=1e-4), seed=0)
    model, result, *_ = train_once(params, side=32)
    assert len(result.history["loss"]) == 2
    assert result.history["learning_rate"] == pytest.approx([1e-3, 1e-4])
    assert model.get_layer(BACKBONE_LAYER).trainable


def test_plateau_and_early_stopping_decisions():
    assert epochs_without_improvement([3, 2, 2.5, 2.6]) == 2
    assert epochs_without_improvement([3, 2, 2.5, 2.6], since=3) == 1  # a cut after epoch 3 restarts the count
    assert epochs_without_improvement([float("nan"), float("nan")]) == 2
    assert should_cut_rate([3, 2, 2.5, 2.6], [], 2) and not should_cut_rate([3, 2, 2.5, 2.6], [4], 2)
    assert not should_cut_rate([3, 2, 2.5, 2.6], [], None)
    assert should_stop([1, 2, 3], 2) and not should_stop([3, 2, 1], 2) and not should_stop([1, 2, 3], None)


def test_epoch_order_depends_on_seed_and_epoch_only():
    np.testing.assert_array_equal(epoch_order(10, 1, 3), epoch_order(10, 1, 3))
    assert sorted(epoch_order(10, 1, 3)) == list(range(10))
    assert not np.array_equal(epoch_order(10, 1, 3), epoch_order(10, 1, 4))


def rates(schedule, steps):
    return [float(keras.ops.convert_to_numpy(schedule(step))) for step in steps]


def test_learning_rate_schedules():
    base = TrainParams(epochs=10, learning_rate=0.1)
    assert learning_rate_schedule(base, 5) == 0.1
    step = learning_rate_schedule(dataclasses.replace(base, schedule="step", step_epochs=4, step_factor=0.5), 5)
    assert rates(step, [0, 19, 20, 39, 40, 49]) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    cosine = learning_rate_schedule(dataclasses.replace(base, schedule="cosine", warmup_epochs=2), 5)
    assert rates(cosine, [0, 5, 10, 30, 50]) == pytest.approx([0, 0.05, 0.1, 0.05, 0], abs=1e-6)
    one_cycle = learning_rate_schedule(dataclasses.replace(base, schedule="one_cycle"), 10)
    assert isinstance(one_cycle, OneCycle) and one_cycle.warmup_steps == 30  # 30% of 100 steps
    assert rates(one_cycle, [0, 30, 65, 100]) == pytest.approx([0.004, 0.1, 0.05, 0], abs=1e-6)
    ends = dataclasses.replace(base, schedule="one_cycle", warmup_epochs=2, one_cycle_start=0.2, one_cycle_end=0.07)
    # airbench94's: from 0.2 of the peak, linearly up, then linearly down to 0.07 of it
    assert rates(learning_rate_schedule(ends, 10), [0, 10, 20, 60, 100]) == pytest.approx(
        [0.02, 0.06, 0.1, 0.1 - 0.5 * 0.093, 0.007], abs=1e-6)


@pytest.mark.parametrize(("name", "optimizer_class"), [
    ("sgd", keras.optimizers.SGD), ("adam", keras.optimizers.Adam), ("adamw", keras.optimizers.AdamW),
    ("rmsprop", keras.optimizers.RMSprop), ("adadelta", keras.optimizers.Adadelta)])
def test_every_optimizer_gets_the_learning_rate_and_weight_decay(name, optimizer_class):
    params = TrainParams(optimizer=name, learning_rate=0.02, momentum=0.5, nesterov=False, weight_decay=1e-4)
    optimizer = make_optimizer(params, 0.02)
    assert isinstance(optimizer, optimizer_class)
    assert float(optimizer.learning_rate) == pytest.approx(0.02)
    assert optimizer.weight_decay == pytest.approx(1e-4)
    if name == "sgd":
        assert optimizer.momentum == 0.5 and optimizer.nesterov is False


def test_balanced_class_weights_match_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    assert list(balanced_class_weights(labels, 3).values()) == pytest.approx(list(expected))
    assert balanced_class_weights(labels, 4)[3] == 1.0  # a class without training images


def test_label_smoothing_of_integer_labels_matches_keras_one_hot_loss():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], "float32")
    labels = np.array([0, 1])
    ours = SparseCategoricalCrossentropyWithSmoothing(0.2)(labels, probabilities)
    keras_loss = keras.losses.CategoricalCrossentropy(label_smoothing=0.2)(np.eye(3)[labels], probabilities)
    assert float(ours) == pytest.approx(float(keras_loss), rel=1e-6)


def test_jit_compile_reaches_the_model():
    model = build_model("simple_cnn", (8, 8, 3), 3)
    from imgclf.training.loop import compile_model

    compile_model(model, TrainParams(jit_compile=False))
    assert model.jit_compile is False
    # true asks Keras for XLA; Keras itself falls back (with a warning) where a model cannot be compiled
    compile_model(model, TrainParams(jit_compile=True))


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_computes_in_half_precision_and_outputs_float32(policy):
    from imgclf.training.loop import compile_model
    from tests.helpers import global_dtype_policy

    with global_dtype_policy(policy):
        model = build_model("fast_cnn", (16, 16, 3), 3, seed=0)
        compile_model(model, TrainParams(learning_rate=0.01))
        images = colour_set(16, 0, side=16)
        loss = model.train_on_batch(images.images.astype("float32"), images.labels)
        outputs = model(images.images[:4].astype("float32"))
    assert np.isfinite(loss).all()
    assert model.get_layer("classifier").dtype_policy.name == "float32" and outputs.dtype == "float32"
    assert any(layer.compute_dtype == policy.removeprefix("mixed_") for layer in model.layers)
