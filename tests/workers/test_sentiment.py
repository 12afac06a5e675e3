"""Sentiment models: the real transformers loading and batched scoring path on a tiny classifier
built here (random weights: mechanics only), and the VADER fallback for values."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

from config.settings import load_settings
from workers import sentiment
from workers.sentiment import (
    TransformersSentiment,
    VaderSentiment,
    article_texts,
    load_sentiment_model,
)
from workers.sources.simulated import NEGATIVE, POSITIVE

pytestmark = [pytest.mark.no_db, pytest.mark.xdist_group("sentiment")]

WORDS = "aapl msft beats misses earnings expectations guidance probe record buyback weak demand"


def build_tiny_classifier(
    folder: Path, labels: tuple[str, ...] = ("positive", "negative", "neutral")
) -> Path:
    """A 1-layer BERT sequence classifier with a 17-word vocabulary, saved like a hub model."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS.split()]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        id2label=dict(enumerate(labels)),
        label2id={v: i for i, v in enumerate(labels)},
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_classifier(tmp_path_factory.mktemp("models") / "tiny-finbert")


def test_transformers_path_scores_in_batches(tiny_model_dir: Path) -> None:
    model = TransformersSentiment(str(tiny_model_dir), batch_size=4)
    assert model.name == "transformers:tiny-finbert"
    calls: list[int] = []
    model.model.register_forward_hook(
        lambda _m, args, kw, _out: calls.append(kw["input_ids"].shape[0]), with_kwargs=True
    )
    texts = [f"AAPL beats earnings expectations {'record ' * i}" for i in range(10)] + [""]
    scores = model.score(texts)
    assert calls == [4, 4, 3]  # 11 texts in batches of 4
    assert scores.shape == (11,) and np.isfinite(scores).all()
    assert ((scores >= -1) & (scores <= 1)).all()
    # padding in a batch does not change a text's score (the attention mask is honoured)
    alone = model.score([texts[0]])
    assert alone[0] == pytest.approx(scores[0], abs=1e-5)


def test_score_is_p_positive_minus_p_negative_by_label_name(tmp_path: Path) -> None:
    folder = build_tiny_classifier(tmp_path / "reordered", ("neutral", "Negative", "Positive"))
    model = TransformersSentiment(str(folder), batch_size=8)
    assert (model.pos, model.neg) == (2, 1)
    enc = model.tokenizer(["msft misses"], return_tensors="pt")
    with torch.inference_mode():
        probs = torch.softmax(model.model(**enc).logits, dim=-1)[0]
    assert model.score(["msft misses"])[0] == pytest.approx(float(probs[2] - probs[1]), abs=1e-6)


def test_classifier_without_sentiment_labels_falls_back_to_vader(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = build_tiny_classifier(tmp_path / "topics", ("LABEL_0", "LABEL_1"))
    with caplog.at_level(logging.WARNING):
        model = load_sentiment_model(load_settings(), model_name=str(folder))
    assert isinstance(model, VaderSentiment)
    assert "need one positive and one negative label" in caplog.text


def test_missing_weights_fall_back_to_vader_without_the_network(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with caplog.at_level(logging.WARNING):
        model = load_sentiment_model(load_settings(), model_name=str(tmp_path / "no-such-model"))
    assert model.name.startswith("vader-")
    assert "falling back to VADER" in caplog.text
    with caplog.at_level(logging.WARNING):
        hub = load_sentiment_model(load_settings(), model_name="ProsusAI/finbert-not-cached")
    assert isinstance(hub, VaderSentiment)


def test_the_configured_model_is_used(tiny_model_dir: Path) -> None:
    model = load_sentiment_model(load_settings(sentiment_model=str(tiny_model_dir)))
    assert isinstance(model, TransformersSentiment)
    assert sentiment.LOADS[-1] == "transformers:tiny-finbert"


def test_vader_values_on_finance_headlines() -> None:
    model = VaderSentiment(batch_size=3)
    assert model.name.startswith("vader-3.3.2")
    pos = model.score([h.format(t="AAPL") for h in POSITIVE])
    neg = model.score([h.format(t="AAPL") for h in NEGATIVE])
    assert (pos > 0.2).all(), pos
    assert (neg < -0.2).all(), neg
    plain = model.score(["The company will hold its annual meeting on Tuesday."])
    assert plain[0] == pytest.approx(0.0)
    assert model.score(["Tesla shares plunge after weak deliveries"])[0] < -0.5
    assert model.score(["Nvidia surges on record revenue, analysts upgrade"])[0] > 0.5


def test_article_texts_join_title_and_plain_summary() -> None:
    texts = article_texts(
        ["Visa beats", "Apple"], ["<p>Visa posted <b>strong</b> results</p>", None]
    )
    assert texts == ["Visa beats. Visa posted strong results", "Apple"]


FINBERT_COMMIT = "4556d13015211d73dccd3fdd39d39232506f3e43"


@pytest.fixture
def from_pretrained_calls(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[str, str, dict[str, object]]]:
    """Record every `from_pretrained` call of the loader (class, name, keyword arguments), and
    serve the tiny classifier for each, as the hub's cache would serve FinBERT."""
    import transformers

    calls: list[tuple[str, str, dict[str, object]]] = []
    for cls in (transformers.AutoTokenizer, transformers.AutoModelForSequenceClassification):
        real = cls.from_pretrained

        def fake(name: str, _real=real, _cls=cls, **kwargs: object) -> object:  # type: ignore[no-untyped-def]
            calls.append((_cls.__name__, name, kwargs))
            return _real(str(tiny_model_dir), local_files_only=True)

        monkeypatch.setattr(cls, "from_pretrained", fake)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return calls


def test_the_default_revision_is_a_pinned_commit() -> None:
    settings = load_settings()
    assert settings.sentiment_model == "ProsusAI/finbert"
    assert settings.sentiment_revision == FINBERT_COMMIT


def test_the_pinned_revision_reaches_the_loader_for_a_hub_model(
    from_pretrained_calls: list[tuple[str, str, dict[str, object]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        model = load_sentiment_model(load_settings())
    assert (
        isinstance(model, TransformersSentiment) and model.name == "transformers:ProsusAI/finbert"
    )
    assert from_pretrained_calls == [
        (cls, "ProsusAI/finbert", {"local_files_only": True, "revision": FINBERT_COMMIT})
        for cls in ("AutoTokenizer", "AutoModelForSequenceClassification")
    ]
    assert "not a commit" not in caplog.text


def test_a_branch_name_as_revision_is_passed_on_with_a_warning(
    from_pretrained_calls: list[tuple[str, str, dict[str, object]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        load_sentiment_model(load_settings(sentiment_revision="main"))
    assert {str(kw["revision"]) for _, _, kw in from_pretrained_calls} == {"main"}
    assert "revision 'main' of 'ProsusAI/finbert' is a branch or tag, not a commit" in caplog.text


def test_a_local_folder_is_loaded_without_a_revision(
    tiny_model_dir: Path, from_pretrained_calls: list[tuple[str, str, dict[str, object]]]
) -> None:
    load_sentiment_model(load_settings(sentiment_model=str(tiny_model_dir)))
    assert [kw for _, _, kw in from_pretrained_calls] == [{"local_files_only": True}] * 2
