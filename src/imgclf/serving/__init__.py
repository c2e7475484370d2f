"""Using a trained model: ``imgclf predict`` (ONNX Runtime or Keras) and the export stage's formats."""
