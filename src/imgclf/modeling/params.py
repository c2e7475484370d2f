"""The ``train`` section of params.yaml: the network, its augmentation, and how it is trained.

The networks and backbones it allows are the names of their records in :mod:`imgclf.modeling.networks`;
how the section is parsed and checked: :mod:`imgclf.plumbing.params`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from imgclf.modeling.networks import BACKBONES, NETWORKS
from imgclf.plumbing.params import Section, fail, require_non_negative, require_positive

FILL_MODES = ("nearest", "reflect", "wrap", "constant")  # train.augment.fill_mode (imgclf.modeling.augment)

if TYPE_CHECKING:  # the type checker sees strings; params.yaml's allowed values are the registries' names
    ModelName = str
    BackboneName = str
    FillMode = str
else:
    ModelName = Literal[tuple(NETWORKS)]
    BackboneName = Literal[tuple(BACKBONES)]
    FillMode = Literal[FILL_MODES]
OptimizerName = Literal["sgd", "muon", "adam", "adamw", "rmsprop", "adadelta"]
ScheduleName = Literal["constant", "step", "cosine", "one_cycle"]
PrecisionName = Literal["off", "float16", "bfloat16", "auto"]
DistributionName = Literal["auto", "none", "mirrored", "multi_worker"]
SGD_OPTIMIZERS = ("sgd", "muon")  # muon moves all but the hidden convolutions' kernels by sgd
BackendName = Literal["tensorflow", "jax"]  # the Keras backends requirements.txt installs


@dataclass(frozen=True)
class AugmentParams(Section):
    """Random augmentation inside the model, active only while training (``train.augment``).

    The settings of Keras' old ``ImageDataGenerator``, in its units (docs/training.md, "Augmentation"):
    angles in degrees, shifts and zoom as fractions of the image size, ``brightness`` the range
    of the factor pixels are multiplied by. 0, false and null are off.
    """

    horizontal_flip: bool | Literal["alternate"] = False  # alternate: each image in every other epoch
    vertical_flip: bool = False
    rotation: float = 0.0  # degrees, drawn from [-rotation, rotation]
    width_shift: float = 0.0  # fraction of the width
    height_shift: float = 0.0  # fraction of the height
    shear: float = 0.0  # degrees
    zoom: float = 0.0  # scale drawn from [1 - zoom, 1 + zoom]
    fill_mode: FillMode = "nearest"  # how pixels from outside the image are filled
    cval: float = 0.0  # the fill value of fill_mode "constant", in pixel values 0-255
    brightness: tuple[float, float] | None = None  # e.g. [0.8, 1.2]
    contrast: float = 0.0  # fraction of the contrast
    translate: int = 0  # whole pixels, drawn from [-translate, translate] each way, edges reflected

    def validate(self, section: str) -> None:
        if not 0.0 <= self.rotation <= 180.0:
            fail(f"{section}.rotation", self.rotation, "use degrees from 0 (off) to 180")
        if not 0.0 <= self.shear < 90.0:
            fail(f"{section}.shear", self.shear, "use degrees from 0 (off) up to, not including, 90")
        for name in ("width_shift", "height_shift", "zoom", "contrast"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                fail(f"{section}.{name}", value, "use a fraction from 0 (off) up to, not including, 1")
        require_non_negative(f"{section}.translate", self.translate)
        if self.brightness is not None and not 0.0 <= self.brightness[0] <= self.brightness[1]:
            fail(f"{section}.brightness", list(self.brightness),
                  "give [low, high] factors with 0 <= low <= high, e.g. [0.8, 1.2], or null for off")

    @property
    def geometric(self) -> bool:
        """Whether any setting moves pixels (these share one resampling)."""
        return (self.horizontal_flip is True or self.vertical_flip or self.rotation > 0 or self.width_shift > 0
                or self.height_shift > 0 or self.shear > 0 or self.zoom > 0)


@dataclass(frozen=True)
class FineTuneParams(Section):
    """A second phase for ``transfer`` models (``train.fine_tune``): the top of the backbone trains too."""

    epochs: int = 0  # 0: no fine-tuning phase
    layers: int | None = None  # backbone layers unfrozen from the top; null: all of them
    learning_rate: float = 1e-5

    def validate(self, section: str) -> None:
        require_non_negative(f"{section}.epochs", self.epochs)
        if self.layers is not None:
            require_positive(f"{section}.layers", self.layers)
        require_positive(f"{section}.learning_rate", self.learning_rate)


@dataclass(frozen=True)
class TrainParams(Section):
    """Model, optimiser, schedule and devices of the train stage (``train``)."""

    key = "train"

    model: ModelName = "simple_cnn"
    backbone: BackboneName = "mobilenet_v2"  # transfer only
    weights: str | None = "imagenet"  # transfer only: imagenet | none | path to a weights file
    freeze_base: bool = True  # transfer only: train the new head alone first
    fine_tune: FineTuneParams = field(default_factory=FineTuneParams)
    epochs: int = 30
    batch_size: int = 32
    optimizer: OptimizerName = "adam"
    learning_rate: float = 0.001
    momentum: float = 0.9  # sgd and muon's sgd
    nesterov: bool = True  # sgd and muon's sgd
    # muon: the kernels of the convolutions without a bias by Muon at this peak rate (on train.schedule),
    # every other weight by sgd at learning_rate (modeling/optim.py, MuonSGD)
    muon_learning_rate: float = 0.05
    muon_momentum: float = 0.9
    weight_decay: float = 0.0  # decoupled weight decay, every optimizer
    label_smoothing: float = 0.0
    schedule: ScheduleName = "constant"
    warmup_epochs: float = 0.0  # cosine and one_cycle: linear warm-up from 0 (one_cycle: from one_cycle_start)
    # one_cycle: the rate at the first step and at the last, as shares of learning_rate (airbench: 0.2, 0.07)
    one_cycle_start: float = 0.04
    one_cycle_end: float = 0.0
    step_epochs: int = 10  # step: multiply the rate by step_factor every step_epochs
    step_factor: float = 0.1
    class_weight: Literal["balanced"] | None = None
    early_stopping_patience: int | None = None  # epochs without a better val_loss before stopping
    reduce_lr_patience: int | None = None  # epochs without a better val_loss before the rate is cut
    reduce_lr_factor: float = 0.1
    # None keeps the architecture's published rate (its Network.dropout_rate in modeling/networks.py).
    dropout_rate: float | None = None
    whiten: bool = False  # the first convolution starts as the training patches' whitening (airbench, airbench95)
    whiten_bias_epochs: int = 0  # sgd, muon: the whitening layer's bias trains this many epochs (airbench: 3)
    identity_init: bool = False  # 3x3 convolutions start as the identity in their first filters
    lookahead: bool = False  # airbench's: a slow copy of the weights, moved every 5 steps (training/lookahead.py)
    norm_shift_lr: float = 1.0  # sgd, muon: the batch-norm shifts' rate over train.learning_rate (airbench: 64)
    # Beta(alpha, alpha) of each batch's mixing share (0: off); both on: one or the other per batch
    mixup: float = 0.0  # blend pairs of training images (modeling/mixing.py)
    cutmix: float = 0.0  # paste a box of one training image into another
    rescale: float | None = None  # null: the network's own (1/255; a backbone's own preprocessing)
    featurewise_center: bool = False  # subtract the training split's mean per channel
    featurewise_std_normalization: bool = False  # and divide by its standard deviation
    backend: BackendName = "tensorflow"  # Keras' backend for training and the heatmaps (modeling/backend.py)
    mixed_precision: PrecisionName = "off"
    jit_compile: bool | Literal["auto"] = "auto"
    distribution: DistributionName = "auto"
    resume: bool = False  # continue an interrupted run from its last epoch
    tensorboard: bool = True  # event files in logs/tensorboard/
    # A model with at most this many MiB of weights gets its ONNX copy in the training process, where
    # TensorFlow and the model are loaded already; a larger one in a process of its own, whose death
    # cannot take the training with it (imgclf.serving.model_folder.add_onnx_copy). 0: always its own.
    onnx_in_process_mb: float = 8.0
    seed: int = 42
    augment: AugmentParams = field(default_factory=AugmentParams)

    def validate(self, section: str) -> None:
        require_positive(f"{section}.epochs", self.epochs)
        require_positive(f"{section}.batch_size", self.batch_size)
        require_positive(f"{section}.learning_rate", self.learning_rate)
        require_non_negative(f"{section}.weight_decay", self.weight_decay)
        require_non_negative(f"{section}.onnx_in_process_mb", self.onnx_in_process_mb)
        require_positive(f"{section}.norm_shift_lr", self.norm_shift_lr)
        require_non_negative(f"{section}.mixup", self.mixup)
        require_non_negative(f"{section}.cutmix", self.cutmix)
        require_non_negative(f"{section}.whiten_bias_epochs", self.whiten_bias_epochs)
        for key in ("one_cycle_start", "one_cycle_end"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                fail(f"{section}.{key}", getattr(self, key), "use a share of train.learning_rate from 0 to 1")
        if self.norm_shift_lr != 1.0 and self.optimizer not in SGD_OPTIMIZERS:
            fail(f"{section}.norm_shift_lr", self.norm_shift_lr,
                 f"1 with train.optimizer {self.optimizer!r}: an adaptive optimizer's steps do not grow with the "
                 "gradients, so only sgd and muon can give the batch-norm shifts a rate of their own")
        require_positive(f"{section}.muon_learning_rate", self.muon_learning_rate)
        if not 0.0 <= self.muon_momentum < 1.0:
            fail(f"{section}.muon_momentum", self.muon_momentum, "use a value from 0 up to, not including, 1")
        if self.optimizer == "muon" and not NETWORKS[self.model].batch_norm_convolutions:
            fail(f"{section}.optimizer", self.optimizer, "another optimizer unless train.model is one of "
                 + ", ".join(name for name, network in NETWORKS.items() if network.batch_norm_convolutions)
                 + " (Muon moves the kernels of convolutions that a batch normalisation follows)")
        if not 0.0 <= self.momentum < 1.0:
            fail(f"{section}.momentum", self.momentum, "use a value from 0 up to, not including, 1")
        if not 0.0 <= self.label_smoothing < 1.0:
            fail(f"{section}.label_smoothing", self.label_smoothing,
                  "use a value from 0 (off) up to, not including, 1")
        if self.dropout_rate is not None and not 0.0 <= self.dropout_rate < 1.0:
            fail(f"{section}.dropout_rate", self.dropout_rate,
                  "use a rate from 0 up to, not including, 1, or null for the architecture's own")
        if not 0.0 <= self.warmup_epochs < self.epochs:
            fail(f"{section}.warmup_epochs", self.warmup_epochs, f"use 0 up to, not including, train.epochs "
                  f"({self.epochs})")
        require_positive(f"{section}.step_epochs", self.step_epochs)
        for key in ("step_factor", "reduce_lr_factor"):
            value = getattr(self, key)
            if not 0.0 < value < 1.0:
                fail(f"{section}.{key}", value, "use a factor between 0 and 1, e.g. 0.1")
        for key in ("early_stopping_patience", "reduce_lr_patience"):
            if getattr(self, key) is not None:
                require_positive(f"{section}.{key}", getattr(self, key))
        if self.reduce_lr_patience is not None and self.schedule != "constant":
            fail(f"{section}.reduce_lr_patience", self.reduce_lr_patience,
                  f"null with train.schedule {self.schedule!r}: a schedule sets the rate itself; "
                  "use schedule constant to cut the rate on plateaus")
        if self.rescale is not None:
            require_positive(f"{section}.rescale", self.rescale)
        if (self.featurewise_center or self.featurewise_std_normalization) and self.model == "transfer" \
                and self.rescale is None:
            fail(f"{section}.featurewise_center", self.featurewise_center,
                  "false with train.model transfer unless train.rescale is set: a backbone brings its own "
                  "input normalisation")
        if self.whiten and not NETWORKS[self.model].whitening:
            fail(f"{section}.whiten", self.whiten, "false unless train.model is one of "
                 + ", ".join(name for name, network in NETWORKS.items() if network.whitening)
                 + " (a network whose first convolution is a whitening layer)")
        if self.whiten_bias_epochs and not (self.whiten and self.optimizer in SGD_OPTIMIZERS):
            fail(f"{section}.whiten_bias_epochs", self.whiten_bias_epochs,
                 "0 unless train.whiten is true and train.optimizer is sgd or muon (the optimizer stops the bias)")
        if self.identity_init and self.model == "transfer":
            fail(f"{section}.identity_init", self.identity_init,
                 "false with train.model transfer: a pretrained backbone keeps its weights")
        if self.fine_tune.epochs and self.model != "transfer":
            fail(f"{section}.fine_tune.epochs", self.fine_tune.epochs,
                  "0 unless train.model is transfer (fine-tuning unfreezes a pretrained backbone)")
        if self.fine_tune.epochs and not self.freeze_base:
            fail(f"{section}.fine_tune.epochs", self.fine_tune.epochs,
                  "0 when train.freeze_base is false: the whole backbone trains from the first epoch")

    @property
    def mixes(self) -> bool:
        """Whether training batches are mixed (``train.mixup`` or ``train.cutmix``), their labels shares."""
        return self.mixup > 0 or self.cutmix > 0

    @property
    def pretrained_weights(self) -> str | None:
        """``imagenet``, a file path, or None for random initialisation (``weights: none`` or null)."""
        return None if self.weights in (None, "none") else self.weights

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.fine_tune.epochs


