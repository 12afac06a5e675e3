"""Headline sentiment in [-1, 1], from FinBERT when its weights are available, else VADER.

`load_sentiment_model()` is called once per process at start-up; the returned model scores
texts in batches. Every score is stored with `model.name`.

- FinBERT (or any sequence classifier with positive / negative labels) through `transformers`:
  score = P(positive) - P(negative). `settings.sentiment_model` is a hub name or a local folder;
  a hub model is read from the local cache, or downloaded once when the hub is reachable, at the
  commit `settings.sentiment_revision` pins (a branch or tag name there is warned about: the
  weights behind it can change without any change here).
- VADER (`vaderSentiment`, its lexicon ships in the package) with a few finance terms added:
  score = VADER's compound score.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from abc import ABC, abstractmethod
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from config.settings import Settings, get_settings

log = logging.getLogger(__name__)

TAG = re.compile(r"<[^>]+>")
COMMIT = re.compile(r"[0-9a-f]{40}")  # a hub revision that names one commit
LOADS: list[str] = []  # every model constructed in this process, by name (tests count them)

# Finance words VADER's general lexicon misses or reads the wrong way (valence -4..4).
FINANCE_TERMS: dict[str, float] = {
    "beat": 2.0,
    "beats": 2.0,
    "miss": -2.0,
    "misses": -2.0,
    "missed": -2.0,
    "upgrade": 2.0,
    "upgrades": 2.0,
    "upgraded": 2.0,
    "downgrade": -2.5,
    "downgrades": -2.5,
    "downgraded": -2.5,
    "raises": 1.5,
    "raised": 1.5,
    "cuts": -1.5,
    "cut": -1.5,
    "buyback": 1.5,
    "record": 1.0,
    "probe": -2.0,
    "investigation": -2.0,
    "recall": -2.0,
    "recalls": -2.0,
    "lawsuit": -2.0,
    "sues": -2.0,
    "weak": -1.5,
    "strong": 1.5,
    "surge": 2.0,
    "surges": 2.0,
    "soar": 2.0,
    "soars": 2.0,
    "plunge": -2.5,
    "plunges": -2.5,
    "slump": -2.0,
    "tumble": -2.0,
    "tumbles": -2.0,
    "rally": 1.5,
    "rallies": 1.5,
    "layoffs": -1.5,
    "bankruptcy": -3.0,
    "default": -2.0,
    "hit": -0.5,
    "wins": 2.0,
    "outperform": 2.0,
    "underperform": -2.0,
    "bullish": 2.0,
    "bearish": -2.0,
}


class SentimentModelError(RuntimeError):
    """A sentiment model could not be loaded or used."""


class SentimentModel(ABC):
    """Scores texts in batches; `name` is recorded beside every score."""

    name: str

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Scores in [-1, 1], one per text, computed `batch_size` texts at a time."""
        out = np.empty(len(texts), dtype="float64")
        for lo in range(0, len(texts), self.batch_size):
            batch = [t if t.strip() else "." for t in texts[lo : lo + self.batch_size]]
            out[lo : lo + len(batch)] = self._score_batch(batch)
        return np.clip(out, -1.0, 1.0)

    @abstractmethod
    def _score_batch(self, texts: list[str]) -> np.ndarray:
        """Scores of one batch."""


class TransformersSentiment(SentimentModel):
    """A `transformers` sequence classifier (FinBERT): P(positive) - P(negative)."""

    max_length = 128

    def __init__(
        self,
        name_or_path: str,
        batch_size: int,
        allow_download: bool = True,
        revision: str | None = None,
    ) -> None:
        """`revision`: the hub commit (or branch) of a hub model; not used for a local folder."""
        super().__init__(batch_size)
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

        local = Path(name_or_path).exists()
        local_only = local or not (allow_download and _hub_reachable())
        options: dict[str, Any] = {"local_files_only": local_only}
        if revision and not local:
            options["revision"] = revision
            if not COMMIT.fullmatch(revision):
                log.warning(
                    "sentiment: revision %r of '%s' is a branch or tag, not a commit: the "
                    "weights behind it can change (pin a commit in SENTIMENT_REVISION)",
                    revision,
                    name_or_path,
                )
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path, **options)
            self.model = AutoModelForSequenceClassification.from_pretrained(name_or_path, **options)
        except (OSError, ValueError) as exc:
            where = "local files only" if local_only else "local cache or the hub"
            raise SentimentModelError(
                f"cannot load '{name_or_path}' ({where}): {str(exc).splitlines()[0]}"
            ) from exc
        self.model.eval()
        labels = {int(i): str(v).lower() for i, v in self.model.config.id2label.items()}
        pos = [i for i, v in labels.items() if v.startswith("pos")]
        neg = [i for i, v in labels.items() if v.startswith("neg")]
        if len(pos) != 1 or len(neg) != 1:
            raise SentimentModelError(
                f"'{name_or_path}' has labels {sorted(labels.values())}; "
                "need one positive and one negative label"
            )
        self.pos, self.neg = pos[0], neg[0]
        p = Path(name_or_path)
        self.name = f"transformers:{p.name if p.exists() else name_or_path}"
        LOADS.append(self.name)

    def _score_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        with torch.inference_mode():
            probs = torch.softmax(self.model(**enc).logits, dim=-1)
        return (probs[:, self.pos] - probs[:, self.neg]).double().numpy()


class VaderSentiment(SentimentModel):
    """VADER's compound score with finance terms added to its lexicon."""

    def __init__(self, batch_size: int) -> None:
        super().__init__(batch_size)
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.analyzer = SentimentIntensityAnalyzer()
        self.analyzer.lexicon.update(FINANCE_TERMS)
        self.name = f"vader-{metadata.version('vaderSentiment')}+finance"
        LOADS.append(self.name)

    def _score_batch(self, texts: list[str]) -> np.ndarray:
        return np.array([self.analyzer.polarity_scores(t)["compound"] for t in texts])


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connect (offline machines fail at once)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    from huggingface_hub import constants

    host = urlsplit(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def load_sentiment_model(
    settings: Settings | None = None, *, model_name: str | None = None
) -> SentimentModel:
    """The sentiment model for this process: the configured transformers model, else VADER."""
    settings = settings or get_settings()
    name = model_name if model_name is not None else settings.sentiment_model
    if name and name.lower() != "vader":
        try:
            model: SentimentModel = TransformersSentiment(
                name, settings.sentiment_batch_size, revision=settings.sentiment_revision
            )
        except SentimentModelError as exc:
            log.warning("sentiment: %s; falling back to VADER", exc)
        else:
            log.info("sentiment: using %s", model.name)
            return model
    model = VaderSentiment(settings.sentiment_batch_size)
    log.info("sentiment: using %s", model.name)
    return model


def article_texts(titles: Sequence[Any], summaries: Sequence[Any]) -> list[str]:
    """The text scored for each article: its title, then its summary when there is one."""
    out = []
    for title, summary in zip(titles, summaries, strict=True):
        text = str(title).strip()
        if isinstance(summary, str) and summary.strip():
            text = f"{text}. {' '.join(TAG.sub(' ', summary).split())}"
        out.append(text)
    return out
