from __future__ import annotations

import logging

import pytest

from config.settings import DEFAULT_UNIVERSE, SettingsError, load_settings

pytestmark = pytest.mark.no_db


def test_defaults_have_the_twenty_ticker_universe():
    s = load_settings()
    assert s.universe == DEFAULT_UNIVERSE and len(s.universe) == 20


def test_universe_from_a_comma_list(monkeypatch):
    monkeypatch.setenv("UNIVERSE", "aapl, msft ,NVDA")
    assert load_settings().universe == ["AAPL", "MSFT", "NVDA"]


@pytest.mark.parametrize(
    "env, value, field",
    [
        ("POLL_INTERVAL_S", "-3", "poll_interval_s"),
        ("MARKET_SOURCE", "bloomberg", "market_source"),
        ("UNIVERSE", "AAPL,AAPL", "universe"),
        ("EMBEDDED_PG_PORT", "eighty", "embedded_pg_port"),
        ("BUY_THRESHOLD", "1.5", "buy_threshold"),
    ],
)
def test_invalid_settings_name_the_field(monkeypatch, env, value, field):
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError, match=f"invalid setting {field} \\({env}\\)"):
        load_settings()


def test_placeholder_secret_stops_production(monkeypatch):
    monkeypatch.setenv("PROFILE", "production")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(SettingsError, match="ANALYST_PASSWORD"):
        load_settings()
    monkeypatch.setenv("ANALYST_PASSWORD", "a-real-long-password")
    assert load_settings().profile == "production"


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("ANALYST_PASSWORD", "choose-a-password"),  # .env.example's own suggestion
        ("ANALYST_PASSWORD", "StockPulse-Demo"),  # the demo's, in other case
        ("ANALYST_PASSWORD", "CHANGEME"),
        ("ANALYST_PASSWORD", "k7#Qm2!x"),  # short
        ("POSTGRES_PASSWORD", "choose-a-long-random-password"),
        ("POSTGRES_PASSWORD", "Postgres"),
        ("DATABASE_URL", "postgresql://stockpulse:short@db:5432/stockpulse"),
        ("AUTH_COOKIE_SECRET", "secret"),
    ],
)
def test_weak_secrets_stop_production_naming_the_variable(monkeypatch, env, value):
    monkeypatch.setenv("PROFILE", "production")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("ANALYST_PASSWORD", "a-real-long-password")
    monkeypatch.setenv("POSTGRES_PASSWORD", "another-real-long-password")
    monkeypatch.setenv(
        "OIDC_SERVER_METADATA_URL", "https://idp.example/.well-known/openid-configuration"
    )
    monkeypatch.setenv("OIDC_CLIENT_ID", "stockpulse")
    monkeypatch.setenv("AUTH_COOKIE_SECRET", "a-cookie-secret-long-enough")
    assert load_settings().profile == "production"
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError, match=env):
        load_settings()
    monkeypatch.setenv("PROFILE", "local")  # the local profile allows demo secrets
    assert load_settings().profile == "local"


def test_sign_in_needs_a_cookie_secret_and_both_provider_settings(monkeypatch):
    monkeypatch.setenv(
        "OIDC_SERVER_METADATA_URL", "https://idp.example/.well-known/openid-configuration"
    )
    with pytest.raises(SettingsError, match="OIDC_CLIENT_ID"):
        load_settings()
    monkeypatch.setenv("OIDC_CLIENT_ID", "stockpulse")
    with pytest.raises(SettingsError, match="AUTH_COOKIE_SECRET"):
        load_settings()
    monkeypatch.setenv("AUTH_COOKIE_SECRET", "a-cookie-secret-long-enough")
    assert load_settings().oidc_enabled


def test_secrets_never_appear_in_dumps_or_logs(monkeypatch, caplog):
    monkeypatch.setenv("NEWS_API_KEY", "nk-0123456789abcdef")
    monkeypatch.setenv("FRED_API_KEY", "fk-0123456789abcdef")
    monkeypatch.setenv("ANALYST_PASSWORD", "pw-0123456789abcdef")
    s = load_settings()
    with caplog.at_level(logging.INFO):
        logging.getLogger("stockpulse.test").info("settings: %s / %r / %s", s.redacted(), s, s)
    text = caplog.text + str(s.redacted()) + repr(s) + str(s)
    for secret in ("nk-0123456789abcdef", "fk-0123456789abcdef", "pw-0123456789abcdef"):
        assert secret not in text
    assert s.news_api_key is not None
    assert s.news_api_key.get_secret_value() == "nk-0123456789abcdef"


def test_database_url_password_is_a_secret(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:supersecretpw@db:5432/x")
    s = load_settings()
    assert "supersecretpw" not in str(s.redacted()) + repr(s)
