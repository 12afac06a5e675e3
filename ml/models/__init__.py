"""What a trained version is: the two architectures and their hyperparameters, the TFLite
export and inference (`tflite_export`, `predict`), its metadata and checksums (`metadata`), its
metrics (`metrics`), the registry of what serves (`registry`) and the loader of the serving
versions (`model_loader`).

May import `ml.features`.
"""
