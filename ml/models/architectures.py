"""The two classifiers: an LSTM and a Transformer encoder, 3-class softmax over CLASSES.

Both builders take `batch_size`: None for training (any batch), a fixed size for the TFLite
copy (the converter needs a static batch for the LSTM). The layer structure does not depend on
it, so `fixed.set_weights(trained.get_weights())` moves the trained weights over.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from ml.models.hyperparameters import HYPERPARAMETERS

N_CLASSES = 3
Builder = Callable[..., keras.Model]


@keras.saving.register_keras_serializable(package="stockpulse")
class PositionalEncoding(keras.layers.Layer):  # type: ignore[misc]
    """Adds the fixed sinusoidal position code of Vaswani et al. (2017) to [batch, W, d]."""

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        length, dim = int(input_shape[-2] or 0), int(input_shape[-1] or 0)
        pos = np.arange(length)[:, None]
        rate = 1.0 / np.power(10_000.0, (2 * (np.arange(dim)[None, :] // 2)) / dim)
        angle = pos * rate
        table = np.where(np.arange(dim)[None, :] % 2 == 0, np.sin(angle), np.cos(angle))
        self.table = keras.ops.convert_to_tensor(table[None].astype("float32"))
        super().build(input_shape)

    def call(self, inputs: Any) -> Any:
        return inputs + self.table


def build_lstm(
    window: int,
    n_features: int,
    batch_size: int | None = None,
    units: int = HYPERPARAMETERS["lstm"]["units"],
) -> keras.Model:
    """LSTM(units) over the window, then a small dense head."""
    hp = HYPERPARAMETERS["lstm"]
    inputs = keras.Input((window, n_features), batch_size=batch_size, name="window")
    x = keras.layers.LSTM(units, name="lstm")(inputs)
    x = keras.layers.Dropout(hp["dropout"])(x)
    x = keras.layers.Dense(hp["head_units"], activation="relu", name="head")(x)
    outputs = keras.layers.Dense(N_CLASSES, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="lstm")


def build_transformer(
    window: int,
    n_features: int,
    batch_size: int | None = None,
    d_model: int = HYPERPARAMETERS["transformer"]["d_model"],
    heads: int = HYPERPARAMETERS["transformer"]["heads"],
    ff_units: int = HYPERPARAMETERS["transformer"]["ff_units"],
    blocks: int = HYPERPARAMETERS["transformer"]["blocks"],
    dropout: float = HYPERPARAMETERS["transformer"]["dropout"],
) -> keras.Model:
    """Encoder: projection + positional encoding, `blocks` x (multi-head self-attention and
    feed-forward, each residual + layer norm), then average pooling joined with the last step."""
    inputs = keras.Input((window, n_features), batch_size=batch_size, name="window")
    x = keras.layers.Dense(d_model, name="project")(inputs)
    x = PositionalEncoding(name="positions")(x)
    for i in range(blocks):
        attn = keras.layers.MultiHeadAttention(
            heads, key_dim=d_model // heads, dropout=dropout, name=f"attention_{i}"
        )(x, x)
        x = keras.layers.LayerNormalization(name=f"norm_a{i}")(
            x + keras.layers.Dropout(dropout)(attn)
        )
        ff = keras.layers.Dense(ff_units, activation="relu", name=f"ff_in_{i}")(x)
        ff = keras.layers.Dense(d_model, name=f"ff_out_{i}")(ff)
        x = keras.layers.LayerNormalization(name=f"norm_f{i}")(
            x + keras.layers.Dropout(dropout)(ff)
        )
    pooled = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    last = x[:, -1, :]
    h = keras.layers.Concatenate(name="summary")([pooled, last])
    h = keras.layers.Dense(
        HYPERPARAMETERS["transformer"]["head_units"], activation="relu", name="head"
    )(h)
    h = keras.layers.Dropout(HYPERPARAMETERS["transformer"]["head_dropout"])(h)
    outputs = keras.layers.Dense(N_CLASSES, activation="softmax", name="probs")(h)
    return keras.Model(inputs, outputs, name="transformer")


BUILDERS: dict[str, Builder] = {"lstm": build_lstm, "transformer": build_transformer}
LEARNING_RATES = {name: float(hp["learning_rate"]) for name, hp in HYPERPARAMETERS.items()}
