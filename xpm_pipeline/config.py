"""Every environment setting, read in one place.

Other modules take a ``Settings`` (or its fields) as arguments; nothing else reads ``os.environ``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from xpm_pipeline.private_files import private_dir
from xpm_pipeline.secrets import Secret

REAL_API_BASE = "https://api.xero.com/practicemanager/3.1/"
REAL_AUTHORIZE_URL = "https://login.xero.com/identity/connect/authorize"
REAL_TOKEN_URL = "https://identity.xero.com/connect/token"
REAL_REVOKE_URL = "https://identity.xero.com/connect/revocation"
REAL_CONNECTIONS_URL = "https://api.xero.com/connections"
API_PATH = "/practicemanager/3.1/"
DEFAULT_SCOPES = ("practicemanager", "offline_access")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable and what to do."""


def _origin(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"not an http(s) URL: {url!r}")
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def _named(name: str, parse, raw: str):
    """``parse(raw)``, with the variable's name in front of its error."""
    try:
        return parse(raw)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None


WAREHOUSE_SCHEMES = ("sqlite", "postgresql", "postgres")


def _warehouse_url(raw: str) -> str:
    scheme = urlsplit(raw).scheme.split("+")[0].lower()
    if scheme not in WAREHOUSE_SCHEMES:
        raise ConfigError(
            f"XPM_WAREHOUSE_URL: unsupported database {scheme or raw!r} "
            "(use sqlite:///path/to/warehouse.db or postgresql://user@host/database)"
        )
    return raw


def _alert_webhook(raw: str | None) -> Secret | None:
    """The alert webhook's URL carries its credential (Slack's does): kept secret, never echoed in errors."""
    if not raw or not raw.strip():
        return None
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError("XPM_ALERT_WEBHOOK_URL must be an http(s) URL (e.g. a Slack incoming webhook)")
    return Secret(raw.strip())


def api_base_from(url: str) -> str:
    """An origin alone (as the sandbox prints it) means XPM's usual path under it."""
    parts = urlsplit(url)
    _origin(url)
    path = parts.path if parts.path not in ("", "/") else API_PATH
    if not path.endswith("/"):
        path += "/"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


@dataclass(frozen=True)
class IdentityEndpoints:
    authorize_url: str
    token_url: str
    revoke_url: str
    connections_url: str

    @classmethod
    def real(cls) -> "IdentityEndpoints":
        return cls(REAL_AUTHORIZE_URL, REAL_TOKEN_URL, REAL_REVOKE_URL, REAL_CONNECTIONS_URL)

    @classmethod
    def same_origin(cls, url: str) -> "IdentityEndpoints":
        """Xero's own paths on one host: how the sandbox serves identity."""
        origin = _origin(url)
        return cls(
            f"{origin}/identity/connect/authorize",
            f"{origin}/connect/token",
            f"{origin}/connect/revocation",
            f"{origin}/connections",
        )


def _int_env(env: dict, name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def secure_home(home: Path) -> None:
    """``XPM_HOME`` (default ``.xpm``) holds the SQLite warehouse and local keys: keep it 0700. It is made by
    whatever first writes into it (0700 then); an existing one with looser permissions is tightened, with one
    warning line. A deployment that writes nothing there (PostgreSQL warehouse) gets no folder."""
    if home.exists():
        private_dir(home)


@dataclass(frozen=True)
class Settings:
    home: Path = Path(".xpm")
    warehouse_url: str = ""
    api_base_url: str = REAL_API_BASE
    identity: IdentityEndpoints = field(default_factory=IdentityEndpoints.real)
    client_id: str | None = None
    client_secret: Secret | None = None
    token_key: Secret | None = None
    daily_limit: int = 10_000
    daily_reserve: int = 200
    minute_limit: int = 60
    alert_webhook_url: Secret | None = None

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        home = Path(env.get("XPM_HOME", ".xpm"))
        warehouse_url = _warehouse_url(env.get("XPM_WAREHOUSE_URL") or f"sqlite:///{(home / 'warehouse.db').as_posix()}")
        api_raw = env.get("XPM_API_BASE_URL")
        api_base = _named("XPM_API_BASE_URL", api_base_from, api_raw) if api_raw else REAL_API_BASE
        identity_raw = env.get("XPM_IDENTITY_URL")
        if identity_raw:
            identity = _named("XPM_IDENTITY_URL", IdentityEndpoints.same_origin, identity_raw)
        elif api_raw:
            identity = IdentityEndpoints.same_origin(api_raw)
        else:
            identity = IdentityEndpoints.real()
        secret = env.get("XPM_CLIENT_SECRET")
        token_key = env.get("XPM_TOKEN_KEY")
        daily = _int_env(env, "XPM_DAILY_LIMIT", 10_000, minimum=1)
        reserve = _int_env(env, "XPM_DAILY_RESERVE", 200)
        if reserve >= daily:
            raise ConfigError(f"XPM_DAILY_RESERVE ({reserve}) must be below XPM_DAILY_LIMIT ({daily})")
        return cls(
            home=home,
            warehouse_url=warehouse_url,
            api_base_url=api_base,
            identity=identity,
            client_id=env.get("XPM_CLIENT_ID") or None,
            client_secret=Secret(secret) if secret else None,
            token_key=Secret(token_key) if token_key else None,
            daily_limit=daily,
            daily_reserve=reserve,
            minute_limit=_int_env(env, "XPM_MINUTE_LIMIT", 60, minimum=1),
            alert_webhook_url=_alert_webhook(env.get("XPM_ALERT_WEBHOOK_URL")),
        )
