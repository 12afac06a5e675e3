"""The two models' hyperparameters (recorded in every version's metadata; the builders in
`ml.models.architectures` read them). Kept apart from the builders so that reading them needs no
TensorFlow."""

from __future__ import annotations

from typing import Any

HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "lstm": {"units": 32, "dropout": 0.2, "head_units": 32, "learning_rate": 2e-3},
    "transformer": {
        "d_model": 32,
        "heads": 4,
        "ff_units": 64,
        "blocks": 1,
        "dropout": 0.1,
        "head_units": 32,
        "head_dropout": 0.2,
        "learning_rate": 2e-3,
    },
}
