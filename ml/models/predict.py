"""Fast predictions from TFLite models (LiteRT); serving never imports TensorFlow.

The `.tflite` files have a fixed batch dimension B (the LSTM converter needs a static batch), so
`predict_batch` pads and chunks any number of windows into calls of B. Resizing the input of a
loaded file to a larger batch is no way round it: the LSTM's converted WHILE loop keeps tensors
of batch B and fails to allocate, and the Transformer's time per window is the same at B = 20 as
at 520 (its compute, not the calls, is what costs). Inputs with the wrong shape
or NaN/inf values raise `PredictionInputError`; nothing is predicted silently.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ml.features.labels import CLASSES


class PredictionInputError(ValueError):
    """A window has the wrong shape or non-finite values."""


@dataclass(frozen=True)
class Prediction:
    label: str
    probabilities: dict[str, float]

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]


class TFLiteModel:
    """One `.tflite` model in a LiteRT interpreter, safe to call from several threads: the one
    runner serving, evaluation and training's parity check use (from a file or from bytes)."""

    def __init__(
        self, path: Path | str | None = None, *, content: bytes | None = None, num_threads: int = 1
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        if (path is None) == (content is None):
            raise ValueError("TFLiteModel needs a path or the model's bytes")
        self.path = Path(path) if path is not None else Path("<bytes>")
        if content is not None:
            self.interpreter = Interpreter(model_content=content, num_threads=num_threads)
        else:
            self.interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        shape = tuple(int(d) for d in self._input["shape"])
        if len(shape) != 3:
            raise PredictionInputError(
                f"{self.path.name}: expected a [batch, window, features] input, found shape {shape}"
            )
        self.batch, self.window, self.n_features = shape
        self._lock = threading.Lock()
        self.invocations = 0

    def _invoke(self, block: np.ndarray) -> np.ndarray:
        with self._lock:
            self.interpreter.set_tensor(self._input["index"], block)
            self.interpreter.invoke()
            self.invocations += 1
            return np.array(self.interpreter.get_tensor(self._output["index"]))

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Class probabilities [n, 3] for windows [n, W, F]."""
        x = check_windows(windows, self.window, self.n_features)
        n = x.shape[0]
        out = np.empty((n, len(CLASSES)), dtype=np.float32)
        for start in range(0, n, self.batch):
            chunk = x[start : start + self.batch]
            block = np.zeros((self.batch, self.window, self.n_features), dtype=np.float32)
            block[: len(chunk)] = chunk
            out[start : start + len(chunk)] = self._invoke(block)[: len(chunk)]
        return out


def check_windows(windows: Any, window: int, n_features: int) -> np.ndarray:
    """Validate input windows [n, W, F] (or one [W, F]); return float32 [n, W, F]."""
    x = np.asarray(windows, dtype=np.float32)
    if x.ndim == 2:
        x = x[None, ...]
    if x.ndim != 3 or x.shape[1:] != (window, n_features) or x.shape[0] == 0:
        raise PredictionInputError(
            f"expected windows of shape [n, {window}, {n_features}], got {tuple(x.shape)}"
        )
    bad = ~np.isfinite(x)
    if bad.any():
        rows = sorted({int(i) for i in np.argwhere(bad)[:, 0]})
        raise PredictionInputError(f"NaN/inf values in window(s) {rows[:10]}")
    return x


def _as_model(interpreter: TFLiteModel | Any) -> TFLiteModel:
    if isinstance(interpreter, TFLiteModel):
        return interpreter
    raise TypeError("make_prediction needs a TFLiteModel (see ml.models.model_loader)")


def to_prediction(probs: Any) -> Prediction:
    p = [float(v) for v in probs]
    return Prediction(CLASSES[int(np.argmax(p))], dict(zip(CLASSES, p, strict=True)))


def make_prediction(interpreter: TFLiteModel, sequence: np.ndarray) -> Prediction:
    """Label and probabilities for one window [W, F].

    Parameters
    ----------
    interpreter : a loaded model (`ml.models.model_loader`).
    sequence : float array [W, F], scaled features of the last W bars up to the bar being
        scored; it must not contain anything after that bar.
    """
    model = _as_model(interpreter)
    return to_prediction(model.predict(np.asarray(sequence)[None, ...])[0])


def predict_batch(interpreter: TFLiteModel, windows: np.ndarray) -> list[Prediction]:
    """Predictions for many windows [n, W, F] at once (e.g. every ticker's newest bar)."""
    return [to_prediction(row) for row in _as_model(interpreter).predict(windows)]
