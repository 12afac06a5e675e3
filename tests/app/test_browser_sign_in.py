"""Sign-in in a real browser: headless Chromium, the app started as supervisord starts it
(`python -m app.launch`), and a real OpenID Connect provider (`oidc-provider-mock`) on this
machine. A viewer sees no retrain or promote controls; an analyst (by the ID token's role claim,
or by the e-mail allow-list) promotes a challenger and the registry names them; signing out
returns to the signed-out page."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import get_settings
from db.reads import read_from_db
from ml.models.registry import read_registry
from tests.app.support import APP_DIR, CHROMIUM, CHROMIUM_ARGS, free_port

pytestmark = pytest.mark.slow
ARTIFACTS = APP_DIR.parent / "test-artifacts"

CHAMPION = "20260101T000000Z"
VIEWER = "viola@example.com"
ANALYST = "ana@example.com"  # the analyst role from the ID token's `roles` claim
LISTED = "alex@example.com"  # the analyst role from ANALYST_EMAILS
REASON = "better on the last week"


@pytest.fixture
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run `make browser` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def provider() -> Iterator[str]:
    """`oidc-provider-mock` on 127.0.0.1 (a free port), in a thread: any client id and secret
    are accepted; its authorize page offers the users below as one-click buttons."""
    import werkzeug.serving
    from oidc_provider_mock import User, app

    users = [
        User(sub=VIEWER, claims={"email": VIEWER, "name": "Viola"}),
        User(sub=ANALYST, claims={"email": ANALYST, "name": "Ana", "roles": ["analyst"]}),
        User(sub=LISTED, claims={"email": LISTED, "name": "Alex"}),
    ]
    server = werkzeug.serving.make_server("127.0.0.1", 0, app(user_claims=users), threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()


class LaunchedApp:
    """`python -m app.launch` (supervisord's `app` program) on a free local port."""

    def __init__(self, log_path: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {**os.environ, "PYTHONPATH": str(APP_DIR.parent), **env}
        self.env["OIDC_REDIRECT_URI"] = f"{self.url}/oauth2callback"
        self.proc: Any = None

    def __enter__(self) -> LaunchedApp:
        args = [sys.executable, "-m", "app.launch", "--server.port", str(self.port)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [*args, "--server.headless", "true"],
                cwd=APP_DIR.parent, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text(errors="replace")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"the app did not start: {self.log_path.read_text(errors='replace')}")

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def sign_in_as(page: Any, user: str) -> None:
    """From a signed-out page: the sidebar's button, then the provider's one-click user."""
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Authorize Client").wait_for(timeout=30_000)
    page.get_by_role("button", name=user, exact=True).click()


def sign_out(page: Any) -> None:
    """The sidebar's button, then the provider's end-session page; back to the app signed out."""
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="End session").click(timeout=30_000)
    page.get_by_role("button", name="Sign in").wait_for(timeout=60_000)


def open_lab(page: Any, url: str) -> None:
    page.goto(f"{url}/model_lab")
    page.get_by_role("heading", name="Model lab").wait_for(timeout=60_000)
    page.get_by_text("Champion:", exact=True).wait_for(timeout=60_000)


def test_viewer_and_analyst_sign_in_promote_and_sign_out(app_env, provider, chromium):
    app_env.copy_version(CHAMPION)
    app_env.promote(CHAMPION)
    challenger = app_env.version  # the trained version: the one to promote
    env = {
        **{k: os.environ[k] for k in ("MODELS_DIR", "DATA_DIR")},
        "MODEL_CONFIG_PATH": str(get_settings().model_config_path),
        "OIDC_SERVER_METADATA_URL": f"{provider}/.well-known/openid-configuration",
        "OIDC_CLIENT_ID": "stockpulse-test",
        "OIDC_CLIENT_SECRET": "any-secret-the-mock-accepts",
        "AUTH_COOKIE_SECRET": "a-long-random-cookie-secret-for-the-test",
        "ANALYST_EMAILS": LISTED,
    }
    ARTIFACTS.mkdir(exist_ok=True)
    with LaunchedApp(ARTIFACTS / "streamlit-sign-in-test.log", env) as server:
        page = chromium.new_page(viewport={"width": 1500, "height": 1400})
        try:
            _walk_through(page, server.url, challenger)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "sign_in_failure.png"), full_page=True)
            raise
        assert "Traceback" not in page.inner_text("body")
    secrets = Path(os.environ["DATA_DIR"]) / "streamlit" / "secrets.toml"
    assert secrets.stat().st_mode & 0o077 == 0


def _walk_through(page: Any, url: str, challenger: str) -> None:
    open_lab(page, url)
    assert page.get_by_role("button", name="Retrain now").count() == 0  # signed out

    sign_in_as(page, VIEWER)
    page.get_by_text(f"{VIEWER} · viewer").wait_for(timeout=60_000)
    open_lab(page, url)
    page.get_by_text("need the analyst role").wait_for()
    for control in ("Retrain now", "Promote", "Promote challenger", "Roll back", "Apply"):
        assert page.get_by_role("button", name=control, exact=True).count() == 0, control
    page.screenshot(path=str(ARTIFACTS / "sign_in_viewer_lab.png"), full_page=True)
    sign_out(page)
    assert page.get_by_text(VIEWER).count() == 0

    sign_in_as(page, ANALYST)
    page.get_by_text(f"{ANALYST} · analyst").wait_for(timeout=60_000)
    open_lab(page, url)
    page.get_by_role("button", name="Retrain now").wait_for()
    form = page.locator('[data-testid="stForm"]').filter(
        has=page.get_by_role("button", name="Promote", exact=True)
    )
    form.get_by_label("Reason (recorded in the registry history)").fill(REASON)
    form.get_by_role("button", name="Promote", exact=True).click()
    page.get_by_text(f"Champion is now {challenger} (oidc:{ANALYST})").wait_for(timeout=60_000)
    page.get_by_text(f"oidc:{ANALYST} — {REASON}").wait_for()  # the champion card
    page.screenshot(path=str(ARTIFACTS / "sign_in_analyst_promoted.png"), full_page=True)
    registry = read_registry()
    assert registry.champion.version == challenger
    assert (registry.history[-1].by, registry.history[-1].reason) == (f"oidc:{ANALYST}", REASON)
    event = read_from_db("SELECT event, version, actor FROM model_events ORDER BY id DESC LIMIT 1")
    assert event.iloc[0].tolist() == ["promoted", challenger, f"oidc:{ANALYST}"]
    sign_out(page)
    assert page.get_by_text(ANALYST).count() == 0

    sign_in_as(page, LISTED)  # an analyst by the allow-list
    page.get_by_text(f"{LISTED} · analyst").wait_for(timeout=60_000)
    open_lab(page, url)
    page.get_by_role("button", name="Retrain now").wait_for()
    sign_out(page)
