"""Secret values that cannot leak by accident: no token or client secret in a log, repr or exception.

``Secret`` wraps a string; only ``reveal()`` gives it back, at the exact place it is sent over the wire.
``TokenCipher`` encrypts tokens at rest with Fernet keys taken from ``XPM_TOKEN_KEY``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from xpm_pipeline.private_files import create_private_file


class Secret:
    """A string that prints as ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self):  # pickling would write the clear value somewhere unexpected
        raise TypeError("Secret values cannot be pickled")


class TokenKeyError(ValueError):
    """``XPM_TOKEN_KEY`` is missing or unusable."""


def _fernet_for(key: str) -> Fernet:
    key = key.strip()
    try:
        return Fernet(key.encode())
    except (ValueError, TypeError):
        pass
    if len(key) < 16:
        raise TokenKeyError(
            "XPM_TOKEN_KEY must be a Fernet key (generate one with `xpm-pipeline keygen`) "
            "or a passphrase of at least 16 characters"
        )
    # A passphrase: stretch it into a Fernet key. The fixed salt keeps the mapping stable across
    # processes; a random Fernet key is still the recommended setting.
    derived = hashlib.scrypt(key.encode(), salt=b"xpm-pipeline/token-key/v1", n=2**14, r=8, p=1, dklen=32)
    return Fernet(base64.urlsafe_b64encode(derived))


class TokenCipher:
    """Encrypts with the first key; decrypts with any, so keys can be rotated (``new,old``)."""

    def __init__(self, keys: str) -> None:
        parts = [k for k in (keys or "").split(",") if k.strip()]
        if not parts:
            raise TokenKeyError("XPM_TOKEN_KEY is empty")
        self._fernet = MultiFernet([_fernet_for(k) for k in parts])

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    def encrypt(self, value: Secret | str) -> str:
        raw = value.reveal() if isinstance(value, Secret) else value
        return self._fernet.encrypt(raw.encode()).decode()

    def decrypt(self, token: str) -> Secret:
        try:
            return Secret(self._fernet.decrypt(token.encode()).decode())
        except InvalidToken:
            raise TokenKeyError(
                "stored tokens cannot be decrypted with XPM_TOKEN_KEY (wrong key? list the old key "
                "after the new one, comma-separated, to rotate)"
            ) from None

    def __repr__(self) -> str:
        return "TokenCipher(***)"


def local_token_key(path: Path) -> str:
    """A token key kept in a file beside a local warehouse (``xpm-pipeline ui``, the demo): generated on
    first use into a file that is 0600 from its first byte. Production sets ``XPM_TOKEN_KEY`` instead."""
    create_private_file(path, TokenCipher.generate_key().encode())
    return path.read_text().strip()


_BEARER = re.compile(r"(?i)(bearer\s+|basic\s+)[A-Za-z0-9\-._~+/=]+")
_FORM_SECRET = re.compile(r"(?i)((?:access|refresh)_token|client_secret|code|code_verifier)=([^&\s\"']+)")


def redact(text: str) -> str:
    """Mask anything shaped like a credential in free text (used on log records and errors)."""
    text = _BEARER.sub(lambda m: m.group(1) + "***", text)
    return _FORM_SECRET.sub(lambda m: m.group(1) + "=***", text)


class RedactingFilter(logging.Filter):
    """Belt and braces: even a careless log call cannot print a bearer token or form secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


HTTP_LOGGERS = ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy", "httpcore.socks")
"""Loggers of the HTTP stack that print URLs and response headers (an OAuth redirect's ``code=``)."""


def guard_http_loggers() -> None:
    """Redact credentials in the HTTP libraries' own records, whatever handlers the host process set up
    (Dagster's, a user's ``logging.basicConfig``): a logger's filter runs before any handler sees the
    record. Idempotent."""
    for name in HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
