"""MixUp and CutMix: training images blended or patched in pairs, their labels mixed in the same proportion.

``train.mixup`` and ``train.cutmix`` are the ``alpha`` of the Beta(alpha, alpha) distribution that
each batch's mixing share is drawn from (0: off). Each image of a batch is paired with another image
of the same batch (a random permutation):

- MixUp (Zhang et al., 2018) blends the two, ``share * image + (1 - share) * partner``;
- CutMix (Yun et al., 2019) pastes a box of the partner covering ``1 - share`` of the image, and the
  share becomes the part of the image that is really left once the box is clipped at the edges.

The label of each mixed image is the two one-hot labels in the same proportion. With both on, each
batch takes one of the two, with equal chance, as timm's ``Mixup`` does.

The mixing happens where the batches are read (:mod:`imgclf.modeling.batches`), in NumPy, before the
model's own augmentation: the images stay ``uint8`` (a blend is rounded to the nearest level, at
most half a level away) and the labels become float shares per class, which the loss and the
accuracy of :mod:`imgclf.modeling.optim` take beside the validation split's integer labels. The
draws of batch ``b`` of epoch ``e`` come from ``(seed, e, b)``, so a resumed run mixes as an
uninterrupted one, and the TensorFlow and PyDataset input paths mix alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Mixing:
    """How one epoch's training batches are mixed: the two ``alpha`` (0: off), the number of model
    outputs (1: one sigmoid, whose label is a share of class 1), and the seeds of the draws."""

    mixup: float
    cutmix: float
    outputs: int
    seed: int
    epoch: int

    def __call__(self, images: np.ndarray, labels: np.ndarray, batch_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch ``batch_index`` of the epoch, ``(images, integer labels)``, mixed: ``(images, label shares)``."""
        rng = np.random.default_rng([self.seed, self.epoch, batch_index])
        targets = one_hot(labels, self.outputs)
        methods = [name for name, alpha in (("mixup", self.mixup), ("cutmix", self.cutmix)) if alpha > 0]
        if not methods or len(images) < 2:
            return images, targets
        method = methods[int(rng.integers(len(methods)))]
        partner = rng.permutation(len(images))
        if method == "mixup":
            share = float(rng.beta(self.mixup, self.mixup))
            mixed = mixup_images(images, images[partner], share)
        else:
            share = float(rng.beta(self.cutmix, self.cutmix))
            mixed, share = cutmix_images(images, images[partner], share, rng)
        return mixed, (share * targets + (1.0 - share) * targets[partner]).astype(np.float32)


def one_hot(labels: np.ndarray, outputs: int) -> np.ndarray:
    """Integer labels as float32 shares: one-hot rows for ``outputs`` classes, or for one sigmoid
    output (``outputs == 1``) the label itself, the share of class 1."""
    labels = np.asarray(labels)
    if outputs == 1:
        return labels.astype(np.float32)
    return np.eye(outputs, dtype=np.float32)[labels]


def mixup_images(images: np.ndarray, partners: np.ndarray, share: float) -> np.ndarray:
    """``share * images + (1 - share) * partners``, rounded back to the images' ``uint8`` levels."""
    blended = share * images.astype(np.float32) + (1.0 - share) * partners.astype(np.float32)
    return np.rint(blended).astype(images.dtype)


def cutmix_images(images: np.ndarray, partners: np.ndarray, share: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """``images`` with one box of ``partners`` pasted in (the same box in every image of the batch),
    and the share of each image that is left.

    The box has the image's aspect ratio and ``1 - share`` of its area; its centre is uniform over
    the image, so near an edge it is clipped and covers less: the share returned is the one really left.
    """
    height, width = images.shape[1:3]
    cut = np.sqrt(1.0 - share)
    box_height, box_width = int(round(height * cut)), int(round(width * cut))
    centre_y, centre_x = int(rng.integers(height)), int(rng.integers(width))
    top, bottom = np.clip([centre_y - box_height // 2, centre_y + (box_height + 1) // 2], 0, height)
    left, right = np.clip([centre_x - box_width // 2, centre_x + (box_width + 1) // 2], 0, width)
    mixed = images.copy()
    mixed[:, top:bottom, left:right] = partners[:, top:bottom, left:right]
    return mixed, 1.0 - (bottom - top) * (right - left) / (height * width)
