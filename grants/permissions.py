"""The permission grammar: `resource:action`, either part may be `*`, and `*` alone matches everything.

A bare word used as a credential scope (the seed's `read`, `write`) means that action on any resource:
`read` is `*:read`. Patterns are compared part by part; nothing else is a wildcard.
"""

import re

from kernel.errors import ValidationFailed

WILDCARD = "*"
_PART = r"(?:\*|[a-z][a-z0-9_.-]{0,63})"
PATTERN_RE = re.compile(rf"\*|{_PART}:{_PART}")
SCOPE_RE = re.compile(rf"\*|{_PART}:{_PART}|[a-z][a-z0-9_.-]{{0,63}}")

# Permissions this service itself checks; the public contract, documented in the README.
KNOWN_PERMISSIONS = (
    "api_keys:generate",
    "api_keys:manage",
    "api_keys:validate",
    "tokens:generate",
    "tokens:manage",
    "tokens:validate",
    "authorizations:grant",
    "authorizations:revoke",
    "permissions:check",
    "identities:read",
    "identities:manage",
    "sessions:read",
    "sessions:revoke",
    "audit:read",
    "audit:export",
    "metrics:read",
    "signing_keys:rotate",
    "jobs:run",
    "oauth_clients:register",
    "oauth_clients:manage",
)

# This service checks its own permissions on no particular resource, so a grant of one of them limited to a
# resource can never allow anything.
OWN_RESOURCES = frozenset(permission.partition(":")[0] for permission in KNOWN_PERMISSIONS)


def never_resource_limited(pattern: str) -> bool:
    """True for a pattern that names only this service's own permissions (`audit:read`, `api_keys:*`)."""
    return pattern != WILDCARD and pattern.partition(":")[0] in OWN_RESOURCES


def parse_pattern(value: object) -> str:
    """A grantable pattern (`resource:action`, `*`), or `ValidationFailed` naming the problem."""
    if not isinstance(value, str) or not PATTERN_RE.fullmatch(value):
        raise ValidationFailed(
            f"Invalid permission {value!r}: use resource:action in lower case, either part may be *, "
            "or * alone for everything",
            code="INVALID_PERMISSION",
        )
    return value


def normalize_scope(value: object) -> str:
    """A credential scope; a bare action word becomes `*:action`."""
    if not isinstance(value, str) or not SCOPE_RE.fullmatch(value):
        raise ValidationFailed(
            f"Invalid scope {value!r}: use resource:action, a bare action such as read, or *",
            code="INVALID_SCOPE",
        )
    return value if value == WILDCARD or ":" in value else f"{WILDCARD}:{value}"


def _parts(pattern: str) -> tuple[str, str]:
    if pattern == WILDCARD:
        return WILDCARD, WILDCARD
    resource, _, action = pattern.partition(":")
    return resource, action


def covers(broader: str, narrower: str) -> bool:
    """Does every permission `narrower` stands for also match `broader`? A concrete permission stands for itself."""
    broad_resource, broad_action = _parts(broader)
    narrow_resource, narrow_action = _parts(narrower)
    return broad_resource in (WILDCARD, narrow_resource) and broad_action in (WILDCARD, narrow_action)


def intersection(first: str, second: str) -> str | None:
    """The pattern standing for what both stand for (`docs:*` and `*:read` give `docs:read`), or None."""
    parts = []
    for one, other in zip(_parts(first), _parts(second), strict=True):
        if one == WILDCARD:
            parts.append(other)
        elif other in (WILDCARD, one):
            parts.append(one)
        else:
            return None
    return WILDCARD if parts == [WILDCARD, WILDCARD] else ":".join(parts)


def widest(patterns: list[str]) -> tuple[str, ...]:
    """The patterns without any another one already covers, in their first order."""
    unique = list(dict.fromkeys(patterns))
    return tuple(
        pattern
        for pattern in unique
        if not any(other != pattern and covers(other, pattern) for other in unique)
    )
