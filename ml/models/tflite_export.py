"""Keras model -> .tflite bytes with a fixed batch, checked against Keras before it is saved.

With Keras 3 and TF 2.21 the converter fails on an LSTM whose batch dimension is dynamic
("TensorListReserve ... element_shape to be static"), so a copy of the model is built with a
fixed batch (settings.serving_batch) and the trained weights, and that copy is converted. The
serving side pads or chunks to that batch. Outputs of the .tflite file, run by the LiteRT
interpreter and runner that serving uses (`ml.models.predict.TFLiteModel`), must match the Keras
model's within `PARITY_TOL`.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Any

import numpy as np

from ml.models.architectures import Builder
from ml.models.predict import TFLiteModel

PARITY_TOL = 1e-4
log = logging.getLogger(__name__)


class TFLiteParityError(RuntimeError):
    """A converted model's outputs differ from its Keras model's."""


def convert_fixed_batch(model: Any, builder: Builder, batch: int, **build_kwargs: Any) -> bytes:
    """Build `builder(window, F, batch_size=batch)`, copy `model`'s weights, convert it."""
    import tensorflow as tf

    _, window, n_features = model.input_shape
    fixed = builder(window, n_features, batch_size=batch, **build_kwargs)
    fixed.set_weights(model.get_weights())
    converter = tf.lite.TFLiteConverter.from_keras_model(fixed)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the saved-model signature
        content: bytes = converter.convert()
    return content


def tflite_predict(content: bytes, X: np.ndarray) -> np.ndarray:
    """Class probabilities of a .tflite model (bytes) for windows X, run as serving runs it."""
    return TFLiteModel(content=content).predict(X)


def check_parity(
    name: str, content: bytes, keras_probs: np.ndarray, X: np.ndarray, tol: float = PARITY_TOL
) -> float:
    """Max |tflite - keras| over the windows X; raise TFLiteParityError above `tol`."""
    if len(X) == 0:
        raise TFLiteParityError(f"{name}: no validation windows to check the .tflite file on")
    diff = float(np.max(np.abs(tflite_predict(content, X) - keras_probs)))
    if not np.isfinite(diff) or diff > tol:
        raise TFLiteParityError(
            f"{name}: .tflite outputs differ from Keras by {diff:.3g} (> {tol:g}) on "
            f"{len(X)} validation windows; the model is not saved"
        )
    log.info("%s: tflite parity max |diff| = %.3g on %d windows", name, diff, len(X))
    return diff
