"""Fitting one network: the training configuration, balanced class weights and the Keras fit
with early stopping on the validation loss (the best weights kept), reporting each epoch to the
progress file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from config.settings import Settings
from ml.features.feature_engineering import FeatureParams
from ml.features.labels import CLASSES, LabelParams
from ml.training.dataset import (
    Samples,
)
from ml.training.progress import Progress

QUICK_EPOCHS, QUICK_TRAIN_WINDOWS, QUICK_VAL_WINDOWS = 3, 15_000, 8_000


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (from settings and the command line)."""

    window: int
    label_params: LabelParams
    feature_params: FeatureParams
    epochs: int
    batch_size: int
    max_train_windows: int
    max_val_windows: int | None
    val_fraction: float
    serving_batch: int
    seed: int
    patience: int = 3
    quick: bool = False

    @classmethod
    def from_settings(
        cls, settings: Settings, quick: bool = False, epochs: int | None = None
    ) -> TrainConfig:
        max_epochs = epochs or (
            min(QUICK_EPOCHS, settings.train_epochs) if quick else settings.train_epochs
        )
        return cls(
            window=settings.window_length,
            label_params=LabelParams.from_settings(settings),
            feature_params=FeatureParams.from_settings(settings),
            epochs=max_epochs,
            batch_size=settings.train_batch_size,
            max_train_windows=min(settings.train_max_windows, QUICK_TRAIN_WINDOWS)
            if quick
            else settings.train_max_windows,
            max_val_windows=QUICK_VAL_WINDOWS if quick else None,
            val_fraction=settings.val_fraction,
            serving_batch=settings.serving_batch,
            seed=settings.train_seed,
            quick=quick,
        )


# --------------------------------------------------------------------------- fitting
def class_weights(y: np.ndarray) -> dict[int, float]:
    """Balanced weights n / (k * count) for the classes present."""
    counts = np.bincount(y, minlength=len(CLASSES))
    present = counts > 0
    return {
        int(c): float(len(y) / (present.sum() * counts[c]))
        for c in range(len(CLASSES))
        if counts[c] > 0
    }


def fit_model(
    name: str, train: Samples, val: Samples, cfg: TrainConfig, progress: Progress, workdir: Path
) -> tuple[Any, int]:
    """Train one model; return it with the best validation-loss weights, and epochs run."""
    import keras

    from ml.models.architectures import BUILDERS, LEARNING_RATES

    keras.utils.set_random_seed(cfg.seed)
    model = BUILDERS[name](cfg.window, train.X.shape[2])
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATES[name]),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    checkpoint = workdir / f"{name}.weights.h5"

    class Report(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            logs = logs or {}
            progress.update(
                "training",
                f"loss {logs.get('loss', float('nan')):.4f}, "
                f"val_loss {logs.get('val_loss', float('nan')):.4f}, "
                f"val_accuracy {logs.get('val_accuracy', float('nan')):.3f}",
                model=name,
                epoch=epoch + 1,
                epochs=cfg.epochs,
            )

    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=cfg.patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, min_lr=1e-5),
        keras.callbacks.ModelCheckpoint(
            str(checkpoint), monitor="val_loss", save_best_only=True, save_weights_only=True
        ),
        Report(),
    ]
    progress.update("training", f"{len(train)} windows", model=name, epoch=0, epochs=cfg.epochs)
    history = model.fit(
        train.X,
        train.y,
        validation_data=(val.X, val.y),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        class_weight=class_weights(train.y),
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
    )
    if checkpoint.exists():
        model.load_weights(str(checkpoint))
    return model, len(history.history["loss"])
