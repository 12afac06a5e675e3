"""What the alert worker decides and sends: channels, routing, quiet hours, messages, apprise.

- **Channels** are apprise URLs: `ALERT_URLS` (named `settings-1`, `settings-2`, ... in their
  order) and those analysts add in the app (`db.alert_channels`). Each has its quiet hours
  (its own, else `ALERT_QUIET_HOURS`) and rate limit (its own, else `ALERT_RATE_PER_MIN`).
- **Routing**: an event goes to every enabled channel that some rule matching it names. The
  settings' rule sends `ALERT_EVENTS` (signals of `ALERT_WATCHLIST`, default the universe, with
  confidence at least `ALERT_MIN_CONFIDENCE`) to the channels of `ALERT_URLS`; the rules added
  in the app name a channel or every channel.
- **Quiet hours** are wall-clock hours in `ALERT_TIMEZONE` (default America/New_York, the
  market's time zone): deliveries due then wait until the quiet hours end.
- **Messages** name the event, ticker, action, confidence, model version and role, price, bar
  time, reason and a link to the app's page; JSON webhooks (`json://`, `jsons://`) also get
  each of these as a field of the posted object, beside apprise's `title` and `message`.
- **Stale feed**: the price feed is stale when the market is open on the market clock and no
  bar has been stored for `ALERT_STALE_AFTER_MIN` session minutes; a closed market (a weekend,
  a holiday, before the open, after the close) is never stale.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import apprise
import pandas as pd

from config.alerting import quiet_hours
from config.market_calendar import xnys
from config.market_clock import MarketTime
from config.settings import Settings
from core.redact import redact
from db.alert_channels import EVERY_CHANNEL, SETTINGS_CHANNEL, Rule, channel_rows, rules
from db.alerts import Event

log = logging.getLogger(__name__)
JSON_SCHEMES = ("json", "jsons")
PAGES = {  # the app page each kind of event links to
    "signal": "stock_detail",
    "promotion": "model_lab",
    "rollback": "model_lab",
    "drift_alarm": "drift_and_history",
}
FIELDS = ("ticker", "action", "confidence", "model_version", "role", "price", "bar_time", "reason")
HOST = re.compile(r"^([a-z.-]+|[0-9.]+)$")  # a host name or an IPv4 address
JSON_RESERVED = {"version", "title", "message", "attachments", "type"}  # apprise's own fields


@dataclass(frozen=True)
class Channel:
    """Where alerts go: an apprise URL with its quiet hours and rate limit."""

    name: str
    url: str
    quiet: tuple[time, time] | None
    per_minute: int
    enabled: bool = True

    def __repr__(self) -> str:  # never the URL
        return f"Channel({self.name!r}, enabled={self.enabled})"


def load_channels(settings: Settings) -> dict[str, Channel]:
    """Every channel by name: the settings' and the app's (disabled ones included)."""
    default_quiet = quiet_hours(settings.alert_quiet_hours)
    urls = settings.alert_urls.get_secret_value().split() if settings.alert_urls else []
    out = {
        f"{SETTINGS_CHANNEL}{i}": Channel(
            f"{SETTINGS_CHANNEL}{i}", url, default_quiet, settings.alert_rate_per_min
        )
        for i, url in enumerate(urls, start=1)
    }
    for row in channel_rows():
        out[row.name] = Channel(
            row.name,
            row.url,
            quiet_hours(row.quiet_hours) if row.quiet_hours else default_quiet,
            row.max_per_minute or settings.alert_rate_per_min,
            row.enabled,
        )
    return out


def load_rules(settings: Settings, channels: Iterable[str]) -> list[Rule]:
    """The settings' rule for each channel of `ALERT_URLS`, then the app's enabled rules."""
    settings_rule = [
        Rule(
            name,
            frozenset(settings.alert_events),
            frozenset(settings.alert_watchlist),
            settings.alert_min_confidence,
        )
        for name in channels
        if name.startswith(SETTINGS_CHANNEL)
    ]
    return settings_rule + rules()


def route(event: Event, rules_: Sequence[Rule], channels: dict[str, Channel]) -> list[str]:
    """The enabled channels `event` goes to (each once), in name order."""
    names: set[str] = set()
    for rule in rules_:
        if rule.matches(event):
            targets = channels if rule.channel == EVERY_CHANNEL else [rule.channel]
            names |= {n for n in targets if n in channels and channels[n].enabled}
    return sorted(names)


def quiet_until(
    now: pd.Timestamp, window: tuple[time, time] | None, zone: str
) -> pd.Timestamp | None:
    """When the quiet hours around `now` end (UTC), or None when `now` is not in them."""
    if window is None:
        return None
    start, end = window
    local = now.tz_convert(ZoneInfo(zone))
    clock = local.time()
    inside = start <= clock < end if start < end else clock >= start or clock < end
    if not inside:
        return None
    day = local.date() if clock < end else local.date() + timedelta(days=1)
    ends = datetime.combine(day, end, tzinfo=ZoneInfo(zone))  # the wall time, DST-aware
    return pd.Timestamp(ends).tz_convert("UTC")


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    fields: dict[str, str]  # flat, for JSON webhooks


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def link(event: Event, settings: Settings) -> str:
    """The app page about `event` (the stock for a signal)."""
    base = settings.alert_app_url.rstrip("/")
    page = PAGES.get(event.kind, "data_health")
    ticker = event.payload.get("ticker")
    if event.kind == "signal" and ticker:
        return f"{base}/{page}?ticker={quote(str(ticker))}"
    return f"{base}/{page}"


def _title(event: Event) -> str:
    p = event.payload
    if event.kind == "signal":
        price = f" at {p['price']:.2f}" if isinstance(p.get("price"), int | float) else ""
        conf = p.get("confidence")
        return f"{p.get('action')} {p.get('ticker')}{price} (confidence {_text(conf)})"
    if event.kind in ("promotion", "rollback"):
        verb = "promoted to champion" if event.kind == "promotion" else "rolled back to"
        return f"Model {verb} {p.get('model_version')}"
    subject = p.get("ticker") or p.get("feed") or p.get("job") or p.get("alarm") or ""
    return f"{event.kind.replace('_', ' ').capitalize()} {subject}".strip()


def render(event: Event, settings: Settings) -> Message:
    """The message for `event`: title, text body and the flat fields for JSON webhooks."""
    fields = {"event": event.kind, "event_id": str(event.id), "fingerprint": event.fingerprint}
    for key in (*FIELDS, *sorted(event.payload)):
        value = event.payload.get(key)
        if value is not None and key not in JSON_RESERVED and key not in fields:
            fields[key] = _text(value)
    fields["link"] = link(event, settings)
    lines = [f"{k.replace('_', ' ')}: {v}" for k, v in fields.items() if k != "fingerprint"]
    if event.kind == "signal":
        lines.append("Not financial advice: the output of statistical models that are often wrong.")
    return Message(f"StockPulse · {_title(event)}", "\n".join(lines), fields)


# --------------------------------------------------------------------------- sending


def url_secrets(url: str) -> list[str]:
    """The parts of an apprise URL that may be secret: the URL, its user and password, its
    longer path segments and query values, and a "host" that looks like a token (Slack- or
    Telegram-style URLs carry tokens there; host names and addresses are kept)."""
    parts = urlsplit(url)
    pieces = [url, parts.username or "", parts.password or ""]
    pieces += [seg for seg in parts.path.split("/") if len(seg) >= 6]
    pieces += [v for chunk in parts.query.split("&") for v in chunk.split("=")[1:] if len(v) >= 6]
    for piece in parts.netloc.replace("@", ":").split(":"):
        if len(piece) >= 8 and not HOST.match(piece):
            pieces.append(piece)
    return [p for p in pieces if p]


def with_fields(url: str, fields: dict[str, str]) -> str:
    """A JSON webhook's URL with `fields` added to its posted object (apprise's `:key=value`
    parameters); any other URL unchanged."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in JSON_SCHEMES:
        return url
    extra = urlencode({f":{k}": v for k, v in fields.items()}, quote_via=quote, safe=":")
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


logging.getLogger("apprise").setLevel(logging.WARNING)  # the worker logs each outcome itself


def send(channel: Channel, message: Message, secrets: Sequence[str] = ()) -> str | None:
    """Send `message` to `channel` through apprise; None when it was accepted, else why not
    (from apprise's own log of the attempt, secrets masked)."""
    masked = [*url_secrets(channel.url), *secrets]
    notifier = apprise.Apprise()
    if not notifier.add(with_fields(channel.url, message.fields)):
        return "apprise does not understand this channel's URL"
    try:
        with notifier.notify(
            title=message.title, body=message.body, body_format=apprise.NotifyFormat.TEXT
        ) as result:
            if result:
                return None
            lines = [e.message for e in result.logs() if e.level in ("WARNING", "ERROR")]
    except Exception as exc:  # a plugin's own bug must not stop the worker
        lines = [f"{type(exc).__name__}: {exc}"]
    return redact("; ".join(lines) or "the channel refused the message", masked)[:500]


# --------------------------------------------------------------------------- stale feeds


@dataclass(frozen=True)
class StaleFeed:
    feed: str
    minutes_behind: int
    newest_bar: pd.Timestamp | None
    market: MarketTime

    @property
    def fingerprint(self) -> str:
        """One alert per stale episode: it ends when a newer bar is stored."""
        if self.newest_bar is None:
            return f"stale_feed:{self.feed}:none:{self.market.now.date()}"
        since = self.newest_bar.isoformat()
        return f"stale_feed:{self.feed}:{since}"

    def payload(self, heartbeat_age_s: float | None) -> dict[str, Any]:
        newest = "no bar stored" if self.newest_bar is None else f"newest bar {self.newest_bar}"
        beat = (
            ""
            if heartbeat_age_s is None
            else f"; price ingestor's heartbeat {heartbeat_age_s:.0f} s ago"
        )
        return {
            "feed": self.feed,
            "bar_time": self.newest_bar,
            "market_now": self.market.now,
            "clock": self.market.description,
            "minutes_behind": self.minutes_behind,
            "reason": (
                f"no new {self.feed} bar for {self.minutes_behind} session minutes on the "
                f"{self.market.description} ({newest}){beat}"
            ),
        }


def stale_prices(
    newest_bar: pd.Timestamp | None, market: MarketTime, after_min: int
) -> StaleFeed | None:
    """The price feed's staleness at the market clock's now: the session minutes of today's
    session, up to the last closed minute, after the newest stored bar; None when the market
    is closed or fewer than `after_min` are missing."""
    cal = xnys()
    minute = market.now.floor("min")
    if not cal.is_trading_minute(minute):
        return None  # weekend, holiday, before the open, after the close
    session = cal.minute_to_session(minute)
    start = pd.Timestamp(cal.session_open(session))
    if newest_bar is not None:
        start = max(start, newest_bar.floor("min") + pd.Timedelta(minutes=1))
    last_closed = minute - pd.Timedelta(minutes=1)
    missing = 0 if start > last_closed else len(cal.minutes_in_range(start, last_closed))
    if missing < after_min:
        return None
    return StaleFeed("prices", missing, newest_bar, market)
