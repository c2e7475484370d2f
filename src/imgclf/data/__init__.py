"""The data path, Keras-free: sources and downloads, the manifest and split, decoding and resizing, packed splits.

Used by the download, split and resize stages; it never imports the model side (modeling, training, reporting).
"""
