"""imgclf: a reproducible Keras image-classification pipeline run by DVC."""

__version__ = "0.1.0"
