"""News benchmarks.

- sentiment_batched: headlines/s scored by a FinBERT-sized classifier (BERT-base shape: 12
  layers, hidden 768; random weights, built locally since the real weights need the internet)
  through `TransformersSentiment` at `sentiment_batch_size`; baseline: one headline per call.
- news_store: article rows/s through `store_articles` (key lookup, VADER scoring, one COPY
  upsert); baseline: one INSERT per row after a per-row existence check.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.common import bench_database, result, timed

HEADLINES = 96
SINGLE = 32  # the one-by-one baseline scores fewer (it is slow)
STORE_ROWS = 5_000


def _headlines(n: int) -> list[str]:
    from workers.sources.simulated import NEGATIVE, POSITIVE

    pool = POSITIVE + NEGATIVE
    tickers = "AAPL MSFT GOOGL AMZN META NVDA TSLA JPM".split()
    return [pool[i % len(pool)].format(t=tickers[i % len(tickers)]) for i in range(n)]


def _bert_base_classifier(folder: Path, texts: list[str]) -> None:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    words = sorted({w for t in texts for w in t.lower().split()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    labels = {0: "positive", 1: "negative", 2: "neutral"}
    config = BertConfig(
        vocab_size=len(vocab), id2label=labels, label2id={v: k for k, v in labels.items()}
    )
    BertForSequenceClassification(config).save_pretrained(folder)


def bench_sentiment() -> list[dict[str, Any]]:
    from config.settings import get_settings
    from workers.sentiment import TransformersSentiment

    texts = _headlines(HEADLINES)
    batch = get_settings().sentiment_batch_size
    with tempfile.TemporaryDirectory() as tmp:
        _bert_base_classifier(Path(tmp), texts)
        batched = TransformersSentiment(tmp, batch_size=batch)
        single = TransformersSentiment(tmp, batch_size=1)
        batched.score(texts[:batch])  # warm-up
        fast_s, _ = timed(lambda: batched.score(texts))
        slow_s, _ = timed(lambda: single.score(texts[:SINGLE]))
    fast, slow = len(texts) / fast_s, SINGLE / slow_s
    print(f"sentiment: batch {batch} {fast:,.1f} headlines/s | one by one {slow:,.1f} headlines/s")
    cond = (
        f"{len(texts)} headlines (baseline {SINGLE}), BERT-base-shaped classifier "
        "(random weights), CPU torch"
    )
    return [result("sentiment_batched", fast, "headlines/s", slow, f"{cond}; batch {batch} vs 1")]


def _articles(n: int) -> pd.DataFrame:
    from workers.news_text import article_key

    texts = _headlines(n)
    ts = pd.date_range("2024-01-02 14:31", periods=n, freq="min", tz="UTC")
    return pd.DataFrame(
        {
            "article_key": [
                article_key(None, "bench", t, p) for t, p in zip(texts, ts, strict=True)
            ],
            "ticker": [t.split()[0] if t.split()[0].isupper() else "AAPL" for t in texts],
            "published_at": ts,
            "source": "bench",
            "title": texts,
            "url": None,
            "summary": None,
        }
    )


def bench_store() -> list[dict[str, Any]]:
    from db.connections import execute
    from db.reads import read_from_db
    from workers.news_ingestor import store_articles
    from workers.sentiment import VaderSentiment

    model = VaderSentiment(batch_size=16)
    rows = _articles(STORE_ROWS)
    with bench_database():
        arrived = rows["published_at"].max()
        fast_s, written = timed(lambda: store_articles(rows, model, arrived_at=arrived))
        assert written == len(rows)
        execute("TRUNCATE news_articles")

        def naive() -> None:
            for r in rows.head(1000).itertuples(index=False):
                found = read_from_db(
                    "SELECT 1 FROM news_articles WHERE article_key = :k AND ticker = :t",
                    {"k": r.article_key, "t": r.ticker},
                )
                if found.empty:
                    score = float(model.score([r.title])[0])
                    execute(
                        "INSERT INTO news_articles (article_key, ticker, published_at, "
                        "available_at, source, title, sentiment, sentiment_model) "
                        "VALUES (:k, :t, :p, :p, :s, :ti, :se, :m)",
                        {
                            "k": r.article_key,
                            "t": r.ticker,
                            "p": r.published_at,
                            "s": r.source,
                            "ti": r.title,
                            "se": score,
                            "m": model.name,
                        },
                    )

        slow_s, _ = timed(naive)
    fast, slow = len(rows) / fast_s, 1000 / slow_s
    print(f"news store: {fast:,.0f} rows/s | per-row check+insert {slow:,.0f} rows/s")
    cond = f"{len(rows):,} new articles (baseline on 1,000), VADER, empty news_articles"
    return [result("news_store", fast, "rows/s", slow, f"{cond}; baseline: per-row insert")]


def run() -> list[dict[str, Any]]:
    return bench_sentiment() + bench_store()
