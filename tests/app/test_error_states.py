"""Every page with the database down, without a model, or with a broken registry file."""

from __future__ import annotations

import pytest

from config.settings import get_settings
from db.connections import dispose_engine
from ml.serving.generate_recommendation import DISCLAIMER
from tests.app.support import PAGES, alerts, open_page, texts

SECRET = "pa55-word-never-shown"


def point_database(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    dispose_engine()


@pytest.mark.parametrize("page", sorted(PAGES))
def test_each_page_says_the_database_is_down_and_recovers(
    app_env, monkeypatch: pytest.MonkeyPatch, page
):
    app_env.feed().seed()
    app_env.promote()
    good_url = get_settings().database_url.get_secret_value()
    point_database(monkeypatch, f"postgresql://stockpulse:{SECRET}@127.0.0.1:9/stockpulse")
    at = open_page(page, {"ticker": "AAPL"})
    assert not at.exception
    assert any("database is not reachable" in e for e in alerts(at, "error"))
    assert not any(SECRET in t for t in texts(at))
    assert any(DISCLAIMER in t for t in texts(at))  # the sidebar's (and the live page's)
    point_database(monkeypatch, good_url)
    at.run()
    assert not at.exception
    assert not any("database is not reachable" in e for e in alerts(at, "error"))


@pytest.mark.parametrize("page", sorted(PAGES))
def test_each_page_works_before_any_model_is_trained(app_env, page):
    app_env.feed().seed()
    at = open_page(page, {"ticker": "AAPL"})
    assert not at.exception
    assert not alerts(at, "error")


def test_a_broken_registry_file_is_reported_plainly(app_env):
    app_env.feed().seed()
    get_settings().model_config_path.write_text('{"champion": 42}')
    home = open_page("home")
    assert not home.exception
    assert any("No model is serving" in w for w in alerts(home, "warning"))
    lab = open_page("lab")
    assert not lab.exception
    assert any("model registry cannot be read" in e for e in alerts(lab, "error"))
