"""The names of the model folder (``models/``): what ``imgclf predict``, the evaluate and export
stages and ``dvc artifacts get image-classifier`` take from a training run.

It holds ``model.keras`` (the best epoch), ``model.onnx`` (the same model for ONNX Runtime, where it
could be made and matched), ``classes.json`` (class names by output index), ``preprocessing.json``
(:data:`imgclf.data.preprocessing.PREPROCESSING_FILE`: how images were resized) and the model card.
The train stage writes it with :func:`imgclf.serving.export.write_model_folder`. Names only here:
whoever reads the folder imports no more than this.
"""

KERAS_FILE = "model.keras"
ONNX_FILE = "model.onnx"
CLASSES_FILE = "classes.json"
