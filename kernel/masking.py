"""Masks secrets before anything reaches an audit record, a log line or a trace."""

import re
from typing import Any

SECRET_FIELD_NAMES = frozenset(
    {
        "api_key",
        "key",
        "secret",
        "token",
        "access_token",
        "refresh_token",
        "jwt",
        "password",
        "authorization",
        "bearer",
        "client_secret",
        "private_key",
        "signing_key",
    }
)
# A field is secret when its name ends in one of these words: `apiKey`, `X-Api-Key`, `new_password`,
# `id_token`. Names ending in another word stay readable: `key_id`, `key_prefix`, `token_type`.
SECRET_NAME_LAST_WORDS = frozenset(
    {
        "key",
        "apikey",
        "secret",
        "token",
        "jwt",
        "password",
        "passwd",
        "passphrase",
        "authorization",
        "bearer",
        "credential",
        "credentials",
        "cookie",
        "cookies",
    }
)
PUBLIC_FIELD_NAMES = frozenset({"public_key"})
API_KEY_PATTERN = re.compile(r"chitty_(?:live|test)_[0-9A-Za-z]{4,}")
JWT_PATTERN = re.compile(r"eyJ[\w-]*\.[\w-]*\.[\w-]*")
MASK = "***"
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NAME_SEPARATORS = re.compile(r"[^0-9a-z]+")


def mask_secret_string(value: str) -> str:
    """Keep an API key's public display prefix, drop the rest; replace JWTs whole."""
    value = API_KEY_PATTERN.sub(lambda m: m.group(0)[: len("chitty_live_") + 4] + "…" + MASK, value)
    return JWT_PATTERN.sub("[jwt]" + MASK, value)


def is_secret_name(name: object) -> bool:
    """Does a field called `name` hold a secret, whatever its spelling (`apiKey`, `X-API-Key`, `api_key`)?"""
    words = [w for w in _NAME_SEPARATORS.split(_CAMEL_BOUNDARY.sub("_", str(name)).lower()) if w]
    normalized = "_".join(words)
    if not words or normalized in PUBLIC_FIELD_NAMES:
        return False
    return normalized in SECRET_FIELD_NAMES or words[-1] in SECRET_NAME_LAST_WORDS


def mask_secrets(value: Any) -> Any:
    """Return a copy of `value` with secret-named fields and secret-shaped strings (keys too) masked."""
    if isinstance(value, dict):
        return {
            (mask_secret_string(key) if isinstance(key, str) else key): (
                MASK if is_secret_name(key) and item not in (None, "") else mask_secrets(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_secrets(item) for item in value]
    if isinstance(value, str):
        return mask_secret_string(value)
    return value
