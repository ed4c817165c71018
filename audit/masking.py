"""Masks secrets before anything reaches an audit record or a log line."""

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
API_KEY_PATTERN = re.compile(r"chitty_(?:live|test)_[0-9A-Za-z]{4,}")
JWT_PATTERN = re.compile(r"eyJ[\w-]*\.[\w-]*\.[\w-]*")
MASK = "***"


def mask_secret_string(value: str) -> str:
    """Keep an API key's public display prefix, drop the rest; replace JWTs whole."""
    value = API_KEY_PATTERN.sub(lambda m: m.group(0)[: len("chitty_live_") + 4] + "…" + MASK, value)
    return JWT_PATTERN.sub("[jwt]" + MASK, value)


def mask_secrets(value: Any) -> Any:
    """Return a copy of `value` with secret-named fields and secret-shaped strings masked."""
    if isinstance(value, dict):
        return {
            key: (
                MASK
                if str(key).lower() in SECRET_FIELD_NAMES and item not in (None, "")
                else mask_secrets(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_secrets(item) for item in value]
    if isinstance(value, str):
        return mask_secret_string(value)
    return value
