"""One redaction for every process: the settings' secrets and credential-shaped text are masked
in what a worker, a job or the app logs, and in everything stored for the pages to show."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from config.settings import get_settings
from core.logs import RedactingFilter
from core.redact import MASK, redact, redact_values
from db.connections import connect
from db.reads import read_from_db

ROOT = Path(__file__).resolve().parents[1]
NEWS_KEY = "nk-fake-0123456789abcdef"  # in the settings (NEWS_API_KEY)
UNKNOWN_KEY = "sk-live-4f9a8b7c6d5e4f3a2b1c0d9e"  # in no setting: masked by its shape
BEARER = "tok-7c1e0d9b8a7f6e5d"
URL_PASSWORD = "pw-in-a-url-5d4c3b2a"
LEAKS = (NEWS_KEY, UNKNOWN_KEY, BEARER, URL_PASSWORD)


def leaked(text: str) -> list[str]:
    return [secret for secret in LEAKS if secret in text]


# --------------------------------------------------------------------------- core.redact


@pytest.mark.no_db
def test_redact_masks_given_secrets_and_credential_shapes() -> None:
    text = (
        f"key {NEWS_KEY}; GET https://news.example/v2?apiKey=abc123&q=x; "
        f"api_key={UNKNOWN_KEY} token: t0k3n password='hunter2 words' "
        f'{{"client_secret": "cs-1"}} NEWS_API_KEY=nk-2 x-api-key: xk-3; '
        f"Authorization: Bearer {BEARER} postgresql://ops:{URL_PASSWORD}@db.example/x "
        "raw ghp_abcdefghijklmnopqrstuvwxyz0123 AKIAABCDEFGHIJKLMNOP"
    )
    masked = redact(text, [NEWS_KEY])
    for secret in (*LEAKS, "abc123", "t0k3n", "hunter2", "words", "cs-1", "nk-2", "xk-3"):
        assert secret not in masked, secret
    assert "ghp_" not in masked and "AKIA" not in masked
    # around a masked credential, the text stays as it was
    assert (
        "apiKey=**********&q=x" in masked and "postgresql://ops:**********@db.example/x" in masked
    )
    assert f'"client_secret": "{MASK}"' in masked


@pytest.mark.no_db
@pytest.mark.parametrize(
    "text",
    [
        "max_tokens=512 tokens=3 token_type=bearer",
        "the password is wrong; set ANALYST_PASSWORD (env)",
        "password=",
        "see https://docs.example/a:b@c and 12:30 UTC",
        "sentiment 0.7 for key k1",
    ],
)
def test_redact_leaves_ordinary_text_alone(text: str) -> None:
    assert redact(text) == text


@pytest.mark.no_db
def test_redact_values_reaches_nested_text() -> None:
    value = {"error": f"refused {NEWS_KEY}", "n": 3, "tries": [f"api_key={UNKNOWN_KEY}", None]}
    out = redact_values(value, [NEWS_KEY])
    assert out == {"error": f"refused {MASK}", "n": 3, "tries": [f"api_key={MASK}", None]}


# --------------------------------------------------------------------------- the logging filter


@pytest.mark.no_db
def test_the_filter_masks_the_message_its_args_and_the_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redacting = RedactingFilter([NEWS_KEY])
    caplog.handler.addFilter(redacting)
    log = logging.getLogger("workers.example")
    try:
        with caplog.at_level(logging.INFO):
            log.info(f"in the line {NEWS_KEY}")
            log.info("in the args %s and %r", NEWS_KEY, {"api_key": UNKNOWN_KEY})
            try:
                raise RuntimeError(f"provider refused {NEWS_KEY} (Bearer {BEARER})")
            except RuntimeError:
                log.exception("fetch failed")
            log.warning("with the stack", stack_info=True)
    finally:
        caplog.handler.removeFilter(redacting)
    assert not leaked(caplog.text), caplog.text
    assert caplog.text.count(MASK) >= 5
    assert "RuntimeError: provider refused **********" in caplog.text  # the traceback is kept
    assert "Traceback (most recent call last)" in caplog.text


@pytest.mark.no_db
def test_a_filter_whose_secrets_cannot_be_read_still_masks_shapes() -> None:
    def broken() -> list[str]:
        raise RuntimeError("settings unreadable")

    record = logging.LogRecord("x", logging.INFO, __file__, 1, "key %s", (UNKNOWN_KEY,), None)
    assert RedactingFilter(broken).filter(record)
    assert record.getMessage() == f"key {MASK}"


LOGGING_WORKER = f"""
import logging, os
from config.cli import setup_logging
log = setup_logging("workers.example")
key = os.environ["NEWS_API_KEY"]
log.info("polling with %s", key)
log.info(f"line with {{key}} and api_key={UNKNOWN_KEY}")
try:
    raise ValueError(f"refused {{key}}")
except ValueError:
    log.exception("cycle failed")
logging.getLogger("third.party").warning("Authorization: Bearer {BEARER}")
"""


def test_every_process_that_sets_up_logging_writes_no_secret() -> None:
    """What a worker or job does at start (`config.cli.setup_logging`), in a process of
    its own: its stderr (supervisord's log, the cron guard's capture) holds no secret."""
    env = {**os.environ, "NEWS_API_KEY": NEWS_KEY, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "INFO"}
    result = subprocess.run(
        [sys.executable, "-c", LOGGING_WORKER],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert not leaked(result.stderr), result.stderr
    assert "polling with **********" in result.stderr
    assert "ValueError: refused **********" in result.stderr


def test_the_app_process_logs_redacted() -> None:
    """The app's data layer installs the same redaction when the app starts."""
    code = (
        "import logging, os\nimport app.data\n"
        "logging.getLogger('app.data').warning('query failed for %s', os.environ['NEWS_API_KEY'])"
    )
    env = {**os.environ, "NEWS_API_KEY": NEWS_KEY, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    assert "query failed for **********" in result.stderr and not leaked(result.stderr)


# --------------------------------------------------------------------------- what is stored


@pytest.fixture
def news_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("NEWS_API_KEY", NEWS_KEY)
    get_settings.cache_clear()
    yield NEWS_KEY
    get_settings.cache_clear()


def test_job_messages_and_heartbeats_are_stored_redacted(news_key: str) -> None:
    from db import health
    from db.ops import heartbeat, job_run

    job = f"t_redact_{uuid.uuid4().hex[:8]}"
    with pytest.raises(RuntimeError), job_run(job):
        raise RuntimeError(f"refused {news_key} with api_key={UNKNOWN_KEY}")
    heartbeat(job, "error", error=f"Bearer {BEARER}", nested={"url": f"https://u:{URL_PASSWORD}@x"})
    stored = read_from_db(
        "SELECT (SELECT message FROM job_runs WHERE job = :j) AS message, "
        "(SELECT details::text FROM worker_heartbeats WHERE worker = :j) AS details",
        {"j": job},
    ).iloc[0]
    assert not leaked(stored["message"] + stored["details"])
    assert stored["message"] == f"RuntimeError: refused {MASK} with api_key={MASK}"
    assert json.loads(stored["details"])["error"] == f"Bearer {MASK}"
    beats = health.heartbeats()
    assert beats.loc[beats["worker"] == job, "details"].iloc[0]["error"] == f"Bearer {MASK}"


def test_queue_and_alert_errors_are_stored_redacted(news_key: str, clean_tables: None) -> None:
    from db import alerts
    from db.queue import mark_gaps, queue_gaps, unresolved_gaps

    start = pd.Timestamp("2026-01-05 15:00", tz="UTC")
    gaps = pd.DataFrame([{"ticker": "AAPL", "gap_start": start, "gap_end": start}])
    with connect() as conn:
        queue_gaps(conn, gaps)
    mark_gaps(gaps, ["failed"], f"HTTPError: 401 for https://q.example/?token={news_key}")
    assert unresolved_gaps()["last_error"].tolist() == [
        f"HTTPError: 401 for https://q.example/?token={MASK}"
    ]

    now = pd.Timestamp.now(tz="UTC")
    event = alerts.enqueue(
        "job_failed", {"job": "x", "reason": f"key {news_key}"}, uuid.uuid4().hex
    )
    assert event is not None
    with connect() as conn:
        alerts.route(conn, {event: ["desk", "ops"]}, now)
        due = {ch: alerts.lock_due(conn, ch, now, 10) for ch in ("desk", "ops")}
        alerts.fail_all(conn, due["ops"], f"channel refused api_key={UNKNOWN_KEY}", now)
    alerts.record(due["desk"][0], now=now, error=f"401 Authorization: Bearer {BEARER}")
    stored = read_from_db(
        "SELECT (SELECT payload::text FROM alert_events WHERE id = :i) AS payload, "
        "(SELECT string_agg(last_error, ' | ') FROM alert_deliveries WHERE event_id = :i) AS e",
        {"i": event},
    ).iloc[0]
    assert not leaked(stored["payload"] + stored["e"]), stored.to_dict()
    assert json.loads(stored["payload"])["reason"] == f"key {MASK}"


# --------------------------------------------------------------------------- the cron path

JOB_THAT_LEAKS = f"""
import os
key = os.environ["NEWS_API_KEY"]
print(f"using news key {{key}}")
print("retrying with api_key={UNKNOWN_KEY}")
print("sent Authorization: Bearer {BEARER}")
print("database postgresql://ops:{URL_PASSWORD}@db.example/stockpulse")
raise RuntimeError(f"the provider refused key {{key}}")
"""


@pytest.fixture
def page_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_tables: None
) -> Iterator[dict[str, str]]:
    """The environment one deployment shares: the guard's, the job's and the app's."""
    import streamlit as st

    env = {
        "NEWS_API_KEY": NEWS_KEY,
        "DATA_DIR": str(tmp_path / "var"),
        "MODELS_DIR": str(tmp_path / "models"),
        "MODEL_CONFIG_PATH": str(tmp_path / "model_config.json"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    st.cache_data.clear()
    st.cache_resource.clear()
    yield {**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "INFO"}
    st.cache_data.clear()
    st.cache_resource.clear()
    get_settings.cache_clear()


def test_a_job_that_prints_secrets_leaves_none_in_job_runs_or_on_the_data_health_page(
    page_env: dict[str, str],
) -> None:
    """A crontab line's path for real: `python -m workers.cron_job --name JOB -- COMMAND`."""
    from tests.app.support import open_page, texts

    job = f"t_leak_{uuid.uuid4().hex[:8]}"
    guard = [sys.executable, "-m", "workers.cron_job", "--name", job, "--"]
    result = subprocess.run(
        [*guard, "python", "-c", JOB_THAT_LEAKS],
        env=page_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "the provider refused key **********" in result.stderr  # the guard's own log
    assert not leaked(result.stdout + result.stderr), result.stderr

    runs = read_from_db("SELECT status, message FROM job_runs WHERE job = :j", {"j": job})
    [(status, message)] = runs.itertuples(index=False)
    assert status == "failed" and "last output" in message
    assert not leaked(message), message
    assert f"using news key {MASK}" in message and f"api_key={MASK}" in message
    payload = read_from_db(
        "SELECT payload::text AS p FROM alert_events WHERE fingerprint LIKE :f",
        {"f": "job_failed:%"},
    )["p"]
    assert len(payload) == 1 and not leaked(payload.iloc[0])

    at = open_page("health")
    assert not at.exception
    shown = "\n".join(texts(at))
    shown += "\n".join(frame.value.to_csv() for frame in at.dataframe)
    assert job in shown  # the run is on the page
    assert not leaked(shown)
