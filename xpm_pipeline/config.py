"""Every environment setting, read in one place.

Other modules take a ``Settings`` (or its fields) as arguments; nothing else reads ``os.environ``.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from xpm_pipeline.private_files import private_dir
from xpm_pipeline.secrets import Secret

REAL_ORIGIN = "https://api.xero.com"
REAL_API_BASE = f"{REAL_ORIGIN}/practicemanager/3.1/"
REAL_AUTHORIZE_URL = "https://login.xero.com/identity/connect/authorize"
REAL_TOKEN_URL = "https://identity.xero.com/connect/token"
REAL_REVOKE_URL = "https://identity.xero.com/connect/revocation"
REAL_CONNECTIONS_URL = "https://api.xero.com/connections"
API_VERSIONS = ("3.0", "3.1")
DEFAULT_API_VERSION = "3.1"
# One variable per identity endpoint, each overriding whatever XPM_IDENTITY_URL (or the default) gives.
ENDPOINT_OVERRIDES = {
    "authorize_url": "XPM_AUTHORIZE_URL",
    "token_url": "XPM_TOKEN_URL",
    "revoke_url": "XPM_REVOKE_URL",
    "connections_url": "XPM_CONNECTIONS_URL",
}
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


def api_base_from(url: str, version: str | None = None) -> str:
    """An origin alone (as the sandbox prints it) means XPM's usual path under it, for ``version``
    (default 3.1). A URL with a path is used as given; a ``version`` it does not name is an error."""
    parts = urlsplit(url)
    _origin(url)
    if version is not None:
        api_version(version)
    if parts.path in ("", "/"):
        path = f"/practicemanager/{version or DEFAULT_API_VERSION}/"
    else:
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        if version is not None and not path.endswith(f"/practicemanager/{version}/"):
            raise ConfigError(f"{url!r} does not name API version {version}; set the version in one place only")
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def api_version(raw: str) -> str:
    if raw not in API_VERSIONS:
        raise ConfigError(f"unknown XPM API version {raw!r} (use one of {', '.join(API_VERSIONS)})")
    return raw


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (where a sandbox runs), by name or address."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _http_url(url: str) -> str:
    _origin(url)
    return url


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

    @classmethod
    def from_env(cls, env: dict, api_raw: str | None) -> "IdentityEndpoints":
        """Xero's own endpoints unless overridden: ``XPM_IDENTITY_URL`` names one origin for all four,
        ``XPM_AUTHORIZE_URL`` etc. one each. Only a loopback ``XPM_API_BASE_URL`` (the sandbox) lends
        its origin to identity when ``XPM_IDENTITY_URL`` is unset: the real API's origin never does, so
        the client secret and refresh tokens go to Xero unless someone says otherwise."""
        base_raw = env.get("XPM_IDENTITY_URL")
        if base_raw:
            base = _named("XPM_IDENTITY_URL", cls.same_origin, base_raw)
        elif api_raw and is_loopback(api_raw):
            base = cls.same_origin(api_raw)
        else:
            base = cls.real()
        overrides = {attr: _named(name, _http_url, env[name]) for attr, name in ENDPOINT_OVERRIDES.items()
                     if env.get(name)}
        return replace(base, **overrides)


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
        if not home.is_dir():
            raise ConfigError(f"XPM_HOME {home} is not a folder: point XPM_HOME at a folder (or where one may be made)")
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
        version_raw = env.get("XPM_API_VERSION")
        version = _named("XPM_API_VERSION", api_version, version_raw.strip()) if version_raw else None
        api_base = _named("XPM_API_BASE_URL", lambda raw: api_base_from(raw, version), api_raw or REAL_ORIGIN)
        identity = IdentityEndpoints.from_env(env, api_raw)
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
