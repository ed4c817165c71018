"""The API key format: `chitty_<env>_<43 random base62><6 base62 CRC32>`, GitHub-style.

The fixed prefix lets secret scanners spot leaked keys offline; the checksum lets us reject typos and junk
without touching the database. 43 base62 characters carry 256 bits of `secrets` randomness. Only the
SHA-256 of a key is ever stored. Everything here is pure: no database, no settings.
"""

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass, field

from kernel.errors import ValidationFailed

BASE62_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KEY_PREFIX = "chitty_"
ENVIRONMENTS = ("live", "test")
RANDOM_LENGTH = 43  # 62**43 > 2**256
CHECKSUM_LENGTH = 6  # 62**6 > 2**32, so any CRC32 fits
DISPLAY_RANDOM_CHARS = 4
KEY_ID_PREFIX = "key_"
KEY_ID_RANDOM_LENGTH = 20
API_KEY_LENGTH = len(KEY_PREFIX) + len("live_") + RANDOM_LENGTH + CHECKSUM_LENGTH

_API_KEY_RE = re.compile(
    rf"(?P<body>{KEY_PREFIX}(?P<environment>live|test)_(?P<random>[0-9A-Za-z]{{{RANDOM_LENGTH}}}))"
    rf"(?P<checksum>[0-9A-Za-z]{{{CHECKSUM_LENGTH}}})"
)
_KEY_ID_RE = re.compile(rf"{KEY_ID_PREFIX}[0-9A-Za-z]{{{KEY_ID_RANDOM_LENGTH}}}")
# Every two-digit base62 string, in order: a CRC32 (< 62**6) is three of them.
_BASE62_PAIRS = [high + low for high in BASE62_ALPHABET for low in BASE62_ALPHABET]
_BASE62_PAIR_COUNT = len(_BASE62_PAIRS)


class InvalidApiKey(ValidationFailed):
    """Not an API key of ours: `MALFORMED` (wrong shape) or `BAD_CHECKSUM` (right shape, a typo)."""

    code = "MALFORMED"


@dataclass(frozen=True)
class ParsedApiKey:
    """A key whose shape and checksum are right. Says nothing about whether it exists."""

    environment: str
    raw: str = field(repr=False)

    @property
    def display_prefix(self) -> str:
        return self.raw[: len(KEY_PREFIX) + len(self.environment) + 1 + DISPLAY_RANDOM_CHARS]


def _random_base62(length: int) -> str:
    return "".join(secrets.choice(BASE62_ALPHABET) for _ in range(length))


def checksum(body: str) -> str:
    """The 6-character base62 CRC32 of everything before the checksum (three table lookups: hot path)."""
    high, low = divmod(zlib.crc32(body.encode("ascii")), _BASE62_PAIR_COUNT)
    high, middle = divmod(high, _BASE62_PAIR_COUNT)
    return _BASE62_PAIRS[high] + _BASE62_PAIRS[middle] + _BASE62_PAIRS[low]


def generate_api_key_secret(environment: str) -> str:
    """A fresh key for `environment` (`live` or `test`); shown to its owner once, never stored."""
    if environment not in ENVIRONMENTS:
        raise ValidationFailed(
            f"environment must be one of {', '.join(ENVIRONMENTS)}", code="INVALID_ENVIRONMENT"
        )
    body = f"{KEY_PREFIX}{environment}_{_random_base62(RANDOM_LENGTH)}"
    return body + checksum(body)


def _match_shape(raw: object) -> re.Match:
    if not isinstance(raw, str) or len(raw) != API_KEY_LENGTH:
        raise InvalidApiKey("This is not a ChittyAuth API key")
    match = _API_KEY_RE.fullmatch(raw)
    if match is None:
        raise InvalidApiKey("This is not a ChittyAuth API key")
    return match


def parse_api_key(raw: object) -> ParsedApiKey:
    """Check shape and checksum without touching the database; raise `InvalidApiKey` otherwise."""
    match = _match_shape(raw)
    if not hmac.compare_digest(checksum(match["body"]), match["checksum"]):
        raise InvalidApiKey(
            "The API key's checksum does not match: it was mistyped or cut", code="BAD_CHECKSUM"
        )
    return ParsedApiKey(match["environment"], raw)


def display_prefix(raw: object) -> str:
    """The public start of anything shaped like a key (e.g. `chitty_live_AbCd`), safe to show and log."""
    match = _match_shape(raw)
    return f"{KEY_PREFIX}{match['environment']}_{match['random'][:DISPLAY_RANDOM_CHARS]}"


def hash_api_key(raw: str) -> str:
    """SHA-256 hex: keys carry 256 random bits, so a fast unsalted hash is the right lookup key."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def generate_key_id() -> str:
    """A public identifier for a key, `key_` + 20 base62 characters."""
    return KEY_ID_PREFIX + _random_base62(KEY_ID_RANDOM_LENGTH)


def is_key_id(value: object) -> bool:
    return isinstance(value, str) and _KEY_ID_RE.fullmatch(value) is not None
