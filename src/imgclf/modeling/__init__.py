"""The Keras model: the networks and backbones, augmentation layers, optimisers, devices, batches, model files.

Used by the train, evaluate and export stages; it reads the packed splits of :mod:`imgclf.data`.
"""
