"""What the train stage optimises and how: optimizer, learning-rate schedule, loss, class weights.

Everything here is plain Keras 3, so it runs on every backend. The schedule and the loss classes
are registered: a saved model (and a training checkpoint, with its optimizer) loads in safe mode.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from imgclf.modeling.params import TrainParams


@keras.saving.register_keras_serializable(package="imgclf")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Smith's one-cycle policy: linear warm-up from ``start * peak`` to ``peak`` over ``warmup_steps``,
    then linear decay to ``end * peak`` at ``total_steps``. The defaults (``peak / 25`` up, 0 at the
    end) are fast CIFAR-10 training's (Page, "How to train your ResNet"); airbench94 runs from 0.2 to
    0.07."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, start: float = 0.04,
                 end: float = 0.0) -> None:
        self.peak = peak
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.start = start
        self.end = end

    def __call__(self, step):
        step = ops.cast(step, "float32")
        low, high = self.start * self.peak, self.end * self.peak
        warming = low + (self.peak - low) * step / max(self.warmup_steps, 1)
        decaying = high + (self.peak - high) * ops.maximum(self.total_steps - step, 0.0) / max(
            self.total_steps - self.warmup_steps, 1)
        return ops.where(step < self.warmup_steps, warming, decaying)

    def get_config(self) -> dict[str, Any]:
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps,
                "start": self.start, "end": self.end}


ONE_CYCLE_WARMUP_SHARE = 0.3  # of all epochs, when train.warmup_epochs is 0 (PyTorch's OneCycleLR default)


def learning_rate_schedule(params: TrainParams,
                           steps_per_epoch: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """``train.schedule`` over ``train.epochs`` epochs of ``steps_per_epoch`` steps, peaking at ``learning_rate``.

    ``constant`` is a float (so reduce-on-plateau can change it), the others schedules by step.
    """
    peak = params.learning_rate
    total_steps = params.epochs * steps_per_epoch
    warmup_steps = round(params.warmup_epochs * steps_per_epoch)
    if params.schedule == "constant":
        return peak
    if params.schedule == "step":
        period = params.step_epochs * steps_per_epoch
        # PiecewiseConstantDecay switches after a boundary: the last step of each period
        boundaries = [start - 1 for start in range(period, total_steps, period)]
        if not boundaries:
            return peak
        values = [peak * params.step_factor ** index for index in range(len(boundaries) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    if params.schedule == "cosine":
        if warmup_steps == 0:
            return keras.optimizers.schedules.CosineDecay(peak, decay_steps=total_steps)
        return keras.optimizers.schedules.CosineDecay(0.0, decay_steps=total_steps - warmup_steps,
                                                      warmup_target=peak, warmup_steps=warmup_steps)
    if params.schedule == "one_cycle":
        if warmup_steps == 0:
            warmup_steps = round(ONE_CYCLE_WARMUP_SHARE * total_steps)
        return OneCycle(peak, warmup_steps, total_steps, params.one_cycle_start, params.one_cycle_end)
    raise ValueError(f"unknown schedule {params.schedule!r}")


@keras.saving.register_keras_serializable(package="imgclf")
class ScaledRateSGD(keras.optimizers.SGD):
    """SGD in which the variables at ``scaled_paths`` learn ``rate_scale`` times as fast, and each
    variable at a path of ``stop_steps`` learns only before that step.

    Scaled: their gradients are multiplied by ``rate_scale`` before the update. With momentum
    (Nesterov's or not) the update is linear in the gradients, so this is the same as a learning rate
    ``rate_scale`` times larger for those variables alone; weight decay, decoupled, shrinks them by
    ``lr * weight_decay`` each step as it does every other variable. Airbench94 trains its batch-norm
    shifts this way at 64 times the rate (``train.norm_shift_lr``): PyTorch gives them a parameter
    group of their own, which Keras' optimizers do not have.

    Stopped: from its step on, each update of a variable in ``stop_steps`` is undone, so it keeps the
    value it had then: no momentum left over, no weight decay (step 0: it never changes). Airbench94
    trains its whitening layer's bias for the first 3 epochs and never its kernel
    (``train.whiten_bias_epochs``). A variable's ``trainable`` would do it for free, but it cannot
    change inside a run on JAX (the optimizer keeps the list it was built with) and a saved model
    does not keep it per variable; the optimizer's config does, so a resumed run stops the same.
    """

    def __init__(self, *args: Any, scaled_paths: list[str] | tuple[str, ...] = (), rate_scale: float = 1.0,
                 stop_steps: dict[str, int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scaled_paths = list(scaled_paths)
        self.rate_scale = rate_scale
        self.stop_steps = dict(stop_steps or {})

    def apply(self, grads, trainable_variables=None):
        # JAX's stateless step passes no variables: the gradients follow the optimizer's own list
        variables = self._trainable_variables if trainable_variables is None else list(trainable_variables)
        scaled = set(self.scaled_paths)
        grads = [grad * self.rate_scale if grad is not None and variable.path in scaled else grad
                 for grad, variable in zip(grads, variables, strict=True)]
        stopped = [variable for variable in variables if variable.path in self.stop_steps]
        if not stopped:
            return super().apply(grads, None if trainable_variables is None else variables)
        # read before the update, which counts this step
        learning = [self.iterations < self.stop_steps[variable.path] for variable in stopped]
        before = [ops.copy(variable.value) for variable in stopped]
        result = super().apply(grads, None if trainable_variables is None else variables)
        for variable, still_learning, value in zip(stopped, learning, before, strict=True):
            variable.assign(ops.where(still_learning, variable.value, value))
        return result

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scaled_paths": self.scaled_paths, "rate_scale": self.rate_scale,
                "stop_steps": self.stop_steps}


# Newton-Schulz's quintic coefficients, chosen for the steepest slope at 0 (Jordan's Muon, airbench94_muon)
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)


def orthogonalise(matrix: Any, steps: int = 5) -> Any:
    """``matrix = U S V^T`` with its singular values moved towards 1: ``U S' V^T``, S' about 0.7 to 1.2.

    Muon's quintic Newton-Schulz iteration, as in Jordan's Muon: scaled to a Frobenius norm of 1 (so
    no singular value is above 1), each step maps every singular value s to ``a s + b s^3 + c s^5``,
    which pushes small ones up fast and leaves the singular vectors as they are.
    """
    a, b, c = NEWTON_SCHULZ
    tall = matrix.shape[0] > matrix.shape[1]
    x = ops.transpose(matrix) if tall else matrix  # the Gram matrix of the shorter side is the cheaper
    x = x / (ops.sqrt(ops.sum(ops.square(x))) + 1e-7)
    for _ in range(steps):
        gram = ops.matmul(x, ops.transpose(x))
        x = a * x + ops.matmul(b * gram + c * ops.matmul(gram, gram), x)
    return ops.transpose(x) if tall else x


@keras.saving.register_keras_serializable(package="imgclf")
class MuonSGD(ScaledRateSGD):
    """airbench94_muon's optimizer: the filters at ``muon_paths`` by Muon, every other variable by SGD.

    A Muon step of a kernel, ``(height, width, channels in, filters)``, seen as a matrix with a
    column per filter: the momentum buffer ``b = muon_momentum * b + g`` (Nesterov's: the step goes
    along ``g + muon_momentum * b``), the kernel rescaled to a Frobenius norm of ``sqrt(filters)``,
    then moved by ``muon_rate_scale * learning_rate`` times the step direction with its singular values
    made about 1 (:func:`orthogonalise`). Every direction of the filters' space moves about as far,
    so those a small gradient holds move as much as the largest. The rescaling holds the kernel at
    one size and changes nothing a batch normalisation after it sees; weight decay, which only
    scales a kernel, it undoes. The iteration runs in ``newton_schulz_dtype``: bfloat16 when the model
    computes in it (``train.mixed_precision``), as airbench94_muon's does: for ``fast_cnn``'s six
    kernels 7.1 ms a step against 13.4 in float32 on an AMX Xeon (benchmarks/README.md, "Muon for the
    hidden convolutions").

    Jordan's airbench94_muon (2024) reaches airbench94's 94% on CIFAR-10 in 8 epochs instead of about 10
    with it. Keras' own ``keras.optimizers.Muon`` moves only two-dimensional weights and gives a
    convolution's kernel to AdamW.
    """

    def __init__(self, *args: Any, muon_paths: list[str] | tuple[str, ...] = (), muon_rate_scale: float = 1.0,
                 muon_momentum: float = 0.9, newton_schulz_dtype: str = "float32", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.muon_paths = list(muon_paths)
        self.muon_rate_scale = muon_rate_scale
        self.muon_momentum = muon_momentum
        self.newton_schulz_dtype = newton_schulz_dtype

    def build(self, variables: list[Any]) -> None:
        if self.built:
            return
        super().build(variables)
        # A Muon kernel's momentum lives in the slot SGD's build gave it (one buffer per kernel,
        # not one read and one idle); only SGD without momentum gives no slots.
        muon = set(self.muon_paths)
        sgd_slots = self.momentums or [None] * len(variables)
        self.muon_buffers = [None if variable.path not in muon
                             else slot if slot is not None
                             else self.add_variable_from_reference(variable, "muon_momentum")
                             for variable, slot in zip(variables, sgd_slots, strict=True)]

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        buffer = self.muon_buffers[self._get_variable_index(variable)]
        if buffer is None:
            super().update_step(gradient, variable, learning_rate)
            return
        rate = ops.cast(learning_rate, variable.dtype) * self.muon_rate_scale
        gradient = ops.cast(gradient, variable.dtype)
        self.assign(buffer, buffer * self.muon_momentum + gradient)
        direction = gradient + self.muon_momentum * buffer
        filters = variable.shape[-1]
        self.assign(variable, variable * (filters ** 0.5 / ops.sqrt(ops.sum(ops.square(variable)))))
        step = orthogonalise(ops.cast(ops.reshape(direction, (-1, filters)), self.newton_schulz_dtype))
        self.assign_sub(variable, rate * ops.reshape(ops.cast(step, variable.dtype), variable.shape))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "muon_paths": self.muon_paths, "muon_rate_scale": self.muon_rate_scale,
                "muon_momentum": self.muon_momentum, "newton_schulz_dtype": self.newton_schulz_dtype}


def _layers_of(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """Every layer inside ``layer``, nested models' included."""
    inner = getattr(layer, "layers", [])
    return [*inner, *(nested for sub in inner for nested in _layers_of(sub))]


def muon_paths(model: keras.Model) -> list[str]:
    """The kernels :class:`MuonSGD` moves by Muon: those of every trainable convolution without a
    bias, which in the networks of ``Network.batch_norm_convolutions`` is each followed by a batch
    normalisation (so their scale is free). ``fast_cnn``'s stem and airbench's whitening layer have a
    bias and stay with SGD, as every dense layer does."""
    return [layer.kernel.path for layer in _layers_of(model)
            if isinstance(layer, keras.layers.Conv2D) and not layer.use_bias and layer.trainable]


def norm_shift_paths(model: keras.Model) -> list[str]:
    """The paths of the shifts (``beta``) of every batch normalisation in ``model``, nested models
    included; a frozen one's is never in an update, so it changes nothing."""
    return [layer.beta.path for layer in _layers_of(model)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.center]


def make_optimizer(params: TrainParams, learning_rate: Any, norm_shifts: list[str] | None = None,
                   stop_steps: dict[str, int] | None = None,
                   muons: list[str] | None = None) -> keras.optimizers.Optimizer:
    """``train.optimizer`` with ``learning_rate`` (a float or a schedule) and ``train.weight_decay``.

    Weight decay is decoupled (the weights shrink by ``lr * weight_decay`` each step) for every
    optimizer; ``adamw`` is Adam with it, as in Loshchilov and Hutter. With SGD and
    ``train.norm_shift_lr`` other than 1, the batch-norm shifts ``norm_shifts`` (variable paths, from
    :func:`norm_shift_paths`) learn that many times as fast; the variables of ``stop_steps`` (from
    :func:`imgclf.modeling.initialisation.whitening_stop_steps`) learn only before their step
    (:class:`ScaledRateSGD`). ``muon`` is SGD with the kernels ``muons`` (from :func:`muon_paths`)
    moved by Muon at ``train.muon_learning_rate``, on the same schedule (:class:`MuonSGD`).
    """
    decay = params.weight_decay or None
    if params.optimizer == "muon":
        if not muons:
            raise ValueError("train.optimizer muon found no convolution without a bias to move by Muon")
        return MuonSGD(learning_rate, momentum=params.momentum, nesterov=params.nesterov, weight_decay=decay,
                       scaled_paths=norm_shifts or [], rate_scale=params.norm_shift_lr, stop_steps=stop_steps,
                       muon_paths=muons, muon_rate_scale=params.muon_learning_rate / params.learning_rate,
                       muon_momentum=params.muon_momentum,
                       newton_schulz_dtype="bfloat16" if keras.config.dtype_policy().compute_dtype == "bfloat16"
                       else "float32")
    if params.optimizer == "sgd":
        if params.norm_shift_lr != 1.0 or stop_steps:
            return ScaledRateSGD(learning_rate, momentum=params.momentum, nesterov=params.nesterov,
                                 weight_decay=decay, scaled_paths=norm_shifts or [],
                                 rate_scale=params.norm_shift_lr, stop_steps=stop_steps)
        return keras.optimizers.SGD(learning_rate, momentum=params.momentum, nesterov=params.nesterov,
                                    weight_decay=decay)
    if params.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate, weight_decay=decay)
    if params.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=params.weight_decay)
    if params.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate, weight_decay=decay)
    if params.optimizer == "adadelta":
        return keras.optimizers.Adadelta(learning_rate, weight_decay=decay)
    raise ValueError(f"unknown optimizer {params.optimizer!r}")


@keras.saving.register_keras_serializable(package="imgclf")
class SparseCategoricalCrossentropyWithSmoothing(keras.losses.Loss):
    """Cross-entropy of integer labels with label smoothing, which Keras' sparse loss lacks:
    the target puts ``1 - label_smoothing`` on the true class, the rest spread over all classes.

    It also takes labels given as shares per class, ``(n, classes)``: the training batches of
    ``train.mixup`` and ``train.cutmix`` (:mod:`imgclf.modeling.mixing`), whose validation labels
    stay integers. The shares are smoothed the same way.
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "sparse_categorical_crossentropy_smoothed",
                 **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        targets = label_shares(y_true, y_pred)
        return keras.losses.categorical_crossentropy(targets, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def label_shares(y_true, y_pred):
    """``y_true`` as shares per class of ``y_pred``'s softmax: one-hot rows of integer labels
    (``(n,)`` or ``(n, 1)``), or the shares themselves when they are given, ``(n, classes)``."""
    classes = y_pred.shape[-1]
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == classes and classes != 1:
        return ops.cast(y_true, y_pred.dtype)
    return ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), ops.shape(y_pred)[-1], dtype=y_pred.dtype)


@keras.saving.register_keras_serializable(package="imgclf")
def top1_accuracy(y_true, y_pred):
    """1 for each image whose most likely class is its label, else 0. The label of a mixed training
    image (shares per class, or a share of class 1 for one sigmoid output) is its larger share:
    Keras' ``"accuracy"`` picks its kind from the first (training) batch, and would then misread the
    validation split's integer labels."""
    if y_pred.shape[-1] == 1:
        predicted = ops.cast(ops.reshape(y_pred, (-1,)) > 0.5, "int32")
        labels = ops.cast(ops.round(ops.reshape(ops.cast(y_true, "float32"), (-1,))), "int32")
    else:
        predicted = ops.argmax(y_pred, axis=-1)
        labels = ops.argmax(label_shares(y_true, y_pred), axis=-1)
    return ops.cast(ops.equal(predicted, ops.cast(labels, predicted.dtype)), "float32")


def make_loss(binary: bool, label_smoothing: float, mixed_labels: bool = False) -> keras.losses.Loss:
    """Binary cross-entropy for one sigmoid output, sparse categorical for a softmax; with
    ``mixed_labels`` (mixed training batches), one that also takes labels as shares per class."""
    if binary:
        return keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)
    if label_smoothing or mixed_labels:
        return SparseCategoricalCrossentropyWithSmoothing(label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()


def make_metrics(mixed_labels: bool) -> list[Any]:
    """The accuracy reported as ``accuracy`` and ``val_accuracy``: Keras' own, or with ``mixed_labels``
    one that reads the mixed training batches' labels and the validation split's alike."""
    if mixed_labels:
        return [keras.metrics.MeanMetricWrapper(top1_accuracy, name="accuracy")]
    return ["accuracy"]


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """scikit-learn's ``balanced``: ``images / (classes * images of the class)``; a class with no
    training images gets weight 1 (it never occurs in a batch)."""
    counts = np.bincount(labels, minlength=num_classes)
    return {index: (len(labels) / (num_classes * count) if count else 1.0) for index, count in enumerate(counts)}


def steps_per_epoch(images: int, batch_size: int) -> int:
    return max(1, math.ceil(images / batch_size))
