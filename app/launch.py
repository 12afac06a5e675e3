"""Start the workbench: `python -m app.launch [streamlit options]` (supervisord's `app` program).

It runs `streamlit run app/main.py` with the options given. With an OpenID Connect provider set
(`settings.oidc_enabled`), Streamlit's `st.login` needs its settings as secrets (an `[auth]`
table); they are written from the settings to `settings.data_dir/streamlit/secrets.toml` (mode
0600, only this user reads it) and that file alone is passed with `--secrets.files`. Without a
provider any such file is removed and no secrets are passed. The process replaces itself with
Streamlit (same pid), so supervisord's signals reach the server. Invalid settings (in
production: a placeholder, default or short secret) stop it with exit code 2 and a message naming
the variable, like every worker.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from config.settings import PROJECT_ROOT, Settings, SettingsError, get_settings

APP_MAIN = PROJECT_ROOT / "app" / "main.py"


def secrets_path(settings: Settings) -> Path:
    return settings.data_dir / "streamlit" / "secrets.toml"


def auth_secrets(settings: Settings) -> dict[str, str]:
    """The `[auth]` table `st.login` reads (one provider, Streamlit's default one)."""
    secret = settings.oidc_client_secret
    cookie = settings.auth_cookie_secret
    return {
        "redirect_uri": settings.oidc_redirect_uri,
        "cookie_secret": cookie.get_secret_value() if cookie else "",
        "client_id": settings.oidc_client_id or "",
        "client_secret": secret.get_secret_value() if secret else "",
        "server_metadata_url": settings.oidc_server_metadata_url or "",
    }


def secrets_toml(settings: Settings) -> str:
    """The secrets file's text (a JSON string is a valid TOML basic string)."""
    lines = ["[auth]", *(f"{k} = {json.dumps(v)}" for k, v in auth_secrets(settings).items())]
    return "\n".join(lines) + "\n"


def write_secrets(settings: Settings) -> Path | None:
    """Write the secrets file when a provider is set (mode 0600, replaced atomically) and
    return it; without a provider remove any earlier one and return None."""
    path = secrets_path(settings)
    if not settings.oidc_enabled:
        path.unlink(missing_ok=True)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    partial = path.with_suffix(".tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(secrets_toml(settings))
    os.replace(partial, path)
    return path


def streamlit_argv(options: list[str], secrets: Path | None) -> list[str]:
    """The command that serves the app with `options` (and the secrets file, if any)."""
    argv = [sys.executable, "-m", "streamlit", "run", str(APP_MAIN)]
    if secrets is not None:
        argv += ["--secrets.files", str(secrets)]
    return argv + options


def main(argv: list[str] | None = None) -> int:
    options = list(sys.argv[1:] if argv is None else argv)
    try:
        secrets = write_secrets(get_settings())
    except SettingsError as exc:  # e.g. production with a placeholder secret: do not serve
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    command = streamlit_argv(options, secrets)
    os.execv(command[0], command)  # noqa: S606 (a fixed argv: this Python and Streamlit)
    return 0  # not reached: the process is Streamlit now


if __name__ == "__main__":
    sys.exit(main())
