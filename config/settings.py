"""All StockPulse settings, typed, from the environment and an optional `.env` file.

Every knob has a type, a default and a one-line description. Secrets are `SecretStr`, never
printed; `Settings.redacted()` is the only dump of the settings and it masks them.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from config.alerting import ALERT_KINDS, quiet_hours
from config.secret_policy import MIN_SECRET_LENGTH, weak_secret
from core.redact import MASK, redact
from core.timeutil import NEW_YORK

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_UNIVERSE = (
    "AAPL MSFT GOOGL AMZN META NVDA TSLA JPM V JNJ WMT PG XOM UNH HD MA BAC KO PEP DIS".split()
)


class SettingsError(RuntimeError):
    """Raised when the environment holds an invalid setting; the message names each field."""


class Settings(BaseSettings):
    """The one settings object of StockPulse."""

    model_config = SettingsConfigDict(
        env_file=PROJECT_ROOT / ".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- where it runs
    profile: Literal["local", "production"] = Field(
        "local", description="local (embedded DB, demo secrets allowed) or production"
    )
    database_url: SecretStr | None = Field(
        None, description="PostgreSQL URL; unset = start the embedded PostgreSQL"
    )
    database_read_url: SecretStr | None = Field(
        None, description="URL of a streaming replica for the app's reads (optional)"
    )
    data_dir: Path = Field(PROJECT_ROOT / "var", description="folder for local state and logs")
    embedded_pg_port: int = Field(54329, ge=1024, le=65535, description="embedded server port")
    db_pool_size: int = Field(5, ge=1, le=100, description="SQLAlchemy pool size")
    timescaledb: Literal["auto", "off"] = Field(
        "auto", description="use TimescaleDB when the server has it (auto) or plain tables (off)"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="logging")

    # --- universe and sources
    universe: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_UNIVERSE), description="tickers, comma/space list"
    )
    market_source: Literal["simulated", "replay", "yfinance"] = Field(
        "simulated", description="where 1-minute bars come from"
    )
    replay_path: Path | None = Field(None, description="CSV/Parquet of bars for the replay source")
    replay_speed: float = Field(60.0, gt=0, description="replay: bar-minutes per real second")
    sim_seed: int = Field(42, description="simulated market seed")
    sim_speed: float = Field(
        1.0, gt=0, description="simulated clock: market seconds per real second (60 = 1 bar/s)"
    )
    sim_planted_signal: float = Field(
        0.0, ge=0, le=1, description="strength of the planted learnable signal (0 = random walk)"
    )
    sim_history_days: int = Field(25, ge=1, le=400, description="sessions seeded for the demo")
    poll_interval_s: float = Field(
        60.0, gt=0, description="price poll period, seconds of the source's clock (60 = each bar)"
    )
    yf_min_request_interval_s: float = Field(2.0, ge=0, description="yfinance spacing")

    # --- news and macro
    news_source: Literal["simulated", "newsapi", "rss"] = Field("simulated", description="news")
    news_api_key: SecretStr | None = Field(None, description="newsapi.org key (optional)")
    news_daily_request_budget: int = Field(90, ge=1, description="News API requests per day")
    news_poll_interval_s: float = Field(300.0, gt=0, description="news poll period")
    sentiment_model: str = Field(
        "ProsusAI/finbert", description="transformers model name or local path for sentiment"
    )
    sentiment_revision: str = Field(
        "4556d13015211d73dccd3fdd39d39232506f3e43",
        description="hub revision (commit) of SENTIMENT_MODEL; ignored for a local path",
    )
    sentiment_batch_size: int = Field(16, ge=1, description="articles scored per batch")
    news_half_life_min: float = Field(240.0, gt=0, description="news sentiment decay half-life")
    news_seed_delay_min: float = Field(
        5.0, ge=0, description="seeded news: minutes after publication it counts as known"
    )
    macro_source: Literal["fred", "fred_csv", "simulated"] = Field("fred", description="macro")
    fred_api_key: SecretStr | None = Field(None, description="FRED key; unset = keyless CSV")

    # --- models
    models_dir: Path = Field(PROJECT_ROOT / "models", description="model version folders")
    model_config_path: Path = Field(
        PROJECT_ROOT / "config" / "model_config.json", description="the model registry"
    )
    window_length: int = Field(32, ge=4, le=512, description="bars per model input window")
    label_horizon_bars: int = Field(3, ge=1, description="triple barrier: vertical barrier")
    barrier_up_mult: float = Field(
        0.8, gt=0, description="upper barrier, x recent 1-min volatility x sqrt(horizon)"
    )
    barrier_down_mult: float = Field(
        0.8, gt=0, description="lower barrier, x recent 1-min volatility x sqrt(horizon)"
    )
    barrier_vol_lookback: int = Field(30, ge=2, description="bars of volatility for barriers")
    train_epochs: int = Field(12, ge=1, description="max epochs per model")
    train_batch_size: int = Field(256, ge=8, description="training batch size")
    train_max_windows: int = Field(150_000, ge=100, description="cap on training windows")
    val_fraction: float = Field(0.2, gt=0, lt=0.5, description="chronological validation share")
    train_lookback_days: int = Field(60, ge=1, description="calendar days of bars to train on")
    train_seed: int = Field(7, description="seed of weights, shuffling and window sampling")
    serving_batch: int = Field(20, ge=1, description="fixed batch of the LSTM's TFLite file")
    buy_threshold: float = Field(0.55, gt=0.33, lt=1, description="both models' P(UP) for BUY")
    sell_threshold: float = Field(0.55, gt=0.33, lt=1, description="both models' P(DOWN) for SELL")
    promotion_margin: float = Field(0.01, ge=0, description="macro-F1 gain needed to promote")
    holdout_sessions: int = Field(
        3, ge=1, description="latest sessions kept out of training for the champion gate"
    )
    baseline_train_sessions: int = Field(
        5, ge=1, description="sessions before the hold-out the baseline models are fitted on"
    )
    bootstrap_samples: int = Field(500, ge=50, description="paired block-bootstrap resamples")
    bootstrap_alpha: float = Field(0.05, gt=0, lt=0.5, description="one-sided bootstrap level")
    cost_bps: float = Field(2.0, ge=0, description="round-trip cost for equity curves, bps")
    drift_psi_threshold: float = Field(0.25, gt=0, description="PSI above this is drift")
    drift_ks_alpha: float = Field(0.001, gt=0, lt=1, description="KS test level")
    drift_feature_share: float = Field(0.3, gt=0, le=1, description="share of drifted features")
    drift_confidence_drop: float = Field(0.15, gt=0, description="confidence drop that alarms")
    drift_persistence: int = Field(3, ge=1, description="consecutive alarming checks to act")
    drift_window_bars: int = Field(390, ge=30, description="recent bars per ticker drift checks")

    # --- serving
    scoring_poll_s: float = Field(
        2.0, gt=0, description="scoring worker: look for new bars this often without a NOTIFY"
    )

    # --- alerts
    alert_urls: SecretStr | None = Field(
        None, description="apprise URLs the settings' alert rule sends to (space-separated)"
    )
    alert_events: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(ALERT_KINDS),
        description="event kinds sent to ALERT_URLS (comma/space list; default every kind)",
    )
    alert_watchlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="tickers whose BUY/SELL signals go to ALERT_URLS (empty: the universe)",
    )
    alert_min_confidence: float = Field(
        0.6, ge=0, le=1, description="least confidence of a BUY/SELL signal sent to ALERT_URLS"
    )
    alert_quiet_hours: str = Field(
        "", description="HH:MM-HH:MM in ALERT_TIMEZONE when deliveries wait (empty: none)"
    )
    alert_timezone: str = Field(
        NEW_YORK, description="time zone of quiet hours (default: the market's)"
    )
    alert_rate_per_min: int = Field(20, ge=1, description="most alerts per channel per minute")
    alert_max_attempts: int = Field(5, ge=1, description="delivery attempts before 'failed'")
    alert_retry_s: float = Field(
        10.0, gt=0, description="first retry delay; doubles per attempt, jittered, up to 30x"
    )
    alert_poll_s: float = Field(
        5.0, gt=0, description="alert worker: look for new events this often without a NOTIFY"
    )
    alert_stale_after_min: int = Field(
        5, ge=1, description="session minutes without a new bar before the price feed is stale"
    )
    alert_app_url: str = Field(
        "http://127.0.0.1:8501", description="the app's address, for the links in alerts"
    )

    # --- app
    app_refresh_s: float = Field(5.0, ge=1, description="live page refresh period")
    analyst_password: SecretStr = Field(
        SecretStr("stockpulse-demo"),
        description="local sign-in: password for analyst actions when no OIDC provider is set",
    )
    login_max_failures: int = Field(
        5, ge=1, description="failed analyst passwords from one address before a lockout"
    )
    login_lockout_min: float = Field(15.0, gt=0, description="minutes a lockout lasts")

    # --- sign-in (OpenID Connect through Streamlit's st.login); unset = local password
    oidc_server_metadata_url: str | None = Field(
        None, description="provider's .well-known/openid-configuration URL (enables sign-in)"
    )
    oidc_client_id: str | None = Field(None, description="OIDC client id")
    oidc_client_secret: SecretStr | None = Field(None, description="OIDC client secret")
    oidc_redirect_uri: str = Field(
        "http://127.0.0.1:8501/oauth2callback", description="the app's OIDC callback URL"
    )
    auth_cookie_secret: SecretStr | None = Field(
        None, description="secret that signs the sign-in cookie (required with OIDC)"
    )
    role_claim: str = Field("roles", description="ID-token claim holding the user's roles")
    analyst_emails: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="e-mails given the analyst role (comma/space list)"
    )
    admin_emails: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="e-mails given the admin role (comma/space list)"
    )
    postgres_password: SecretStr | None = Field(
        None, description="docker compose: the database superuser's password (checked only)"
    )

    @field_validator("universe", mode="before")
    @classmethod
    def _split_universe(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in value.replace(",", " ").split() if part]
        return value

    @field_validator("universe")
    @classmethod
    def _check_universe(cls, value: list[str]) -> list[str]:
        tickers = [t.strip().upper() for t in value]
        if not tickers:
            raise ValueError("the universe is empty")
        bad = [t for t in tickers if not t.replace(".", "").replace("-", "").isalnum()]
        if bad:
            raise ValueError(f"not ticker symbols: {bad}")
        if len(set(tickers)) != len(tickers):
            raise ValueError("duplicate tickers")
        return tickers

    @field_validator(
        "alert_events", "alert_watchlist", "analyst_emails", "admin_emails", mode="before"
    )
    @classmethod
    def _split_lists(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in value.replace(",", " ").split() if part]
        return value

    @field_validator("alert_events")
    @classmethod
    def _check_alert_events(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(ALERT_KINDS))
        if unknown:
            raise ValueError(f"unknown event kinds {unknown}; known: {', '.join(ALERT_KINDS)}")
        return value

    @field_validator("alert_watchlist")
    @classmethod
    def _upper_watchlist(cls, value: list[str]) -> list[str]:
        return [t.strip().upper() for t in value]

    @field_validator("analyst_emails", "admin_emails")
    @classmethod
    def _lower_emails(cls, value: list[str]) -> list[str]:
        return [e.strip().lower() for e in value]

    @field_validator("alert_quiet_hours")
    @classmethod
    def _check_quiet_hours(cls, value: str) -> str:
        quiet_hours(value)  # raises ValueError naming the expected form
        return value.strip()

    @field_validator("alert_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. America/New_York)") from None
        return value

    @model_validator(mode="after")
    def _check_secrets(self) -> Settings:
        if self.profile == "production":
            weak = self.weak_secrets()
            if weak:
                raise ValueError(
                    "production refuses placeholder, default or short secrets "
                    f"(at least {MIN_SECRET_LENGTH} characters): set " + ", ".join(weak)
                )
        if self.market_source == "replay" and self.replay_path is None:
            raise ValueError("market_source=replay needs replay_path (REPLAY_PATH)")
        if bool(self.oidc_server_metadata_url) != bool(self.oidc_client_id):
            raise ValueError(
                "sign-in needs both OIDC_SERVER_METADATA_URL and OIDC_CLIENT_ID (or neither)"
            )
        if self.oidc_enabled and self.auth_cookie_secret is None:
            raise ValueError("sign-in with OIDC needs AUTH_COOKIE_SECRET")
        return self

    def weak_secrets(self) -> list[str]:
        """The environment variables whose secrets production refuses: placeholders (any
        case), the demo's defaults and anything shorter than MIN_SECRET_LENGTH."""
        checked: list[tuple[str, str | None]] = [
            ("ANALYST_PASSWORD", self.analyst_password.get_secret_value()),
        ]
        if self.postgres_password is not None:
            checked.append(("POSTGRES_PASSWORD", self.postgres_password.get_secret_value()))
        for env, url in (
            ("DATABASE_URL", self.database_url),
            ("DATABASE_READ_URL", self.database_read_url),
        ):
            if url is not None:
                password = urlsplit(url.get_secret_value()).password
                if password is not None:  # no password in the URL: libpq's own (PGPASSFILE)
                    checked.append((f"{env} (its password)", unquote(password)))
        if self.oidc_enabled:
            cookie = self.auth_cookie_secret
            checked.append(("AUTH_COOKIE_SECRET", cookie.get_secret_value() if cookie else ""))
        return [env for env, value in checked if weak_secret(value)]

    @property
    def oidc_enabled(self) -> bool:
        """True when an OpenID Connect provider is configured (sign-in through st.login)."""
        return bool(self.oidc_server_metadata_url and self.oidc_client_id)

    @property
    def embedded(self) -> bool:
        """True when no DATABASE_URL is set and the embedded PostgreSQL serves."""
        return self.database_url is None

    @property
    def lock_path(self) -> Path:
        """The lock shared by nightly training, validation and the app's retrain button."""
        return self.data_dir / "training.lock"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def secret_values(self) -> list[str]:
        """Every secret value in the settings, and the password inside DATABASE_URL, so any
        message shown or logged can be masked (`redact`)."""
        values = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                values.append(value.get_secret_value())
        if self.alert_urls is not None:  # each channel's URL on its own too
            values += self.alert_urls.get_secret_value().split()
        for url in (self.database_url, self.database_read_url):
            password = None if url is None else urlsplit(url.get_secret_value()).password
            if password:
                values.append(unquote(password))
                values.append(password)
        return values

    def redact(self, message: str) -> str:
        """`message` with every secret of these settings masked."""
        return redact(message, self.secret_values())

    def redacted(self) -> dict[str, Any]:
        """A dump of every setting with secrets masked."""
        out: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                out[name] = MASK if value.get_secret_value() else ""
            else:
                out[name] = str(value) if isinstance(value, Path) else value
        return out


def _format_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        env = field.upper() if err["loc"] else ""
        where = f"{field} ({env})" if env else field
        lines.append(f"invalid setting {where}: {err['msg']}")
    return "; ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment; raise SettingsError naming every bad field."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_format_error(exc)) from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached). Tests call `get_settings.cache_clear()`."""
    return load_settings()
