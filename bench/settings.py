"""Bench-only settings: the service's own settings plus the peer libraries the benchmarks compare against.

Everything else (database, cache, JWT secret and claims) comes from `chittyauth_site.settings` and the same
environment, so both sides of every comparison run on one configuration. DEBUG is off as in production:
with it on, Django records every query, which would slow the query-bound contenders for no real reason.
"""

from chittyauth_site.settings import *  # noqa: F403
from chittyauth_site.settings import (
    INSTALLED_APPS,
    JWT_AUDIENCE,
    JWT_ISSUER,
    JWT_LEEWAY_SECONDS,
    JWT_SECRET,
)

DEBUG = False
INSTALLED_APPS = [*INSTALLED_APPS, "rest_framework_api_key", "rest_framework_simplejwt"]
ROOT_URLCONF = "bench.urls"

# simplejwt verifies our own HS256 tokens: same key, algorithm, issuer, audience and leeway. Our tokens carry
# no simplejwt `token_type` claim, so that check is off; the blacklist app is not installed (no revocation).
SIMPLE_JWT = {
    "ALGORITHM": "HS256",
    "SIGNING_KEY": JWT_SECRET,
    "ISSUER": JWT_ISSUER,
    "AUDIENCE": JWT_AUDIENCE,
    "LEEWAY": JWT_LEEWAY_SECONDS,
    "TOKEN_TYPE_CLAIM": None,
    "JTI_CLAIM": "jti",
}
