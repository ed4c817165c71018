"""The cases `bench.credentials_bench` measures, run in a worker process whose Django is set up for one backend.

Every case puts our hot path beside the library or query it replaces, on the same database and cache, and
checks before timing that both sides give the same answers (a valid credential is accepted, a revoked one
or an ungranted permission is refused), so the comparison is between equal work.
"""

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from itertools import chain

import jwt
from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.db.models import Q
from django.utils import timezone
from rest_framework_api_key.models import APIKey
from rest_framework_simplejwt.tokens import AccessToken

from bench.harness import Ratio, interleaved, interleaved_cold, median
from grants.checks import check_permission
from grants.models import Grant
from identities.models import Identity
from kernel.callers import Caller
from kernel.invalidation import REVOKED_TOKENS as REVOKED_TOKENS_TOPIC
from kernel.invalidation import invalidate_now
from keys import verification as key_verification
from keys.models import RevokedToken
from keys.services import generate_api_key, verify_api_key
from keys.signing_keys import leeway_seconds
from keys.token_format import HS256, JWT_TYP, REQUIRED_CLAIMS
from keys.tokens import generate_jwt, verify_jwt
from principals.services import register_identity

PRINCIPAL = "CHITTY-PEO-BENCHMAIN-A"
OTHER_PRINCIPALS = 999
GRANTS_PER_PRINCIPAL = 100
KEYS_PER_SIDE = 500
REVOKED_TOKENS = 1000
CHECKED_PERMISSION = "documents:read"
UNGRANTED_PERMISSION = "billing:write"
# Calls per round: more for the fast side, so each batch lasts long enough to time well.
FAST_CALLS, SLOW_CALLS = 3000, 300
JWT_PEER_CALLS = 1000
DISTINCT_TOKENS_PER_ROUND = 200
COLD_CALLS_PER_ROUND = 30


@dataclass(frozen=True)
class Target:
    """What the issue asks of a ratio: at least (`>=`) or at most (`<=`) `value`."""

    relation: str
    value: float

    def met_by(self, ratio: float) -> bool:
        return ratio >= self.value if self.relation == ">=" else ratio <= self.value

    def as_text(self) -> str:
        return f"{'≥' if self.relation == '>=' else '≤'} {self.value:g}x"


def comparison(
    case: str, timings: dict[str, list[float]], numerator: str, denominator: str, target: Target
) -> dict:
    """One reported ratio: `numerator ÷ denominator` per round, with the medians behind it."""
    ratio = Ratio.of(timings[numerator], timings[denominator])
    return {
        "case": case,
        "numerator": numerator,
        "denominator": denominator,
        "numerator_ns": median(timings[numerator]),
        "denominator_ns": median(timings[denominator]),
        "ratio": ratio.median,
        "ratio_low": ratio.low,
        "ratio_high": ratio.high,
        "target": target.as_text(),
        "met": target.met_by(ratio.median),
    }


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"bench precondition failed: {message}")


@dataclass(frozen=True)
class Fixture:
    identity: Identity
    our_key: str
    peer_key: str
    token: str
    revoked_token: str
    distinct_tokens: list[str]
    revoked_jtis: frozenset[str]


def prepare_database() -> None:
    """Migrate the worker's fresh database and start from an empty cache (as a new process would)."""
    call_command("migrate", interactive=False, verbosity=0)
    cache.clear()


def seed(rounds: int) -> Fixture:
    """100,000 grants (100 on the measured principal), 500 keys on each side, 1,000 revoked tokens."""
    system = Caller.system("bench")
    identity = register_identity(system, PRINCIPAL)
    others = Identity.objects.bulk_create(
        Identity(chitty_id=f"CHITTY-PEO-BENCH{number}-A", entity_type="PEO")
        for number in range(OTHER_PRINCIPALS)
    )
    own_grants = [f"resource{number}:read" for number in range(GRANTS_PER_PRINCIPAL - 1)] + ["documents:*"]
    theirs = (
        Grant(principal=other, permission=f"resource{number}:write", granted_by="system:bench")
        for other in others
        for number in range(GRANTS_PER_PRINCIPAL)
    )
    mine = (
        Grant(principal=identity, permission=permission, granted_by="system:bench")
        for permission in own_grants
    )
    Grant.objects.bulk_create(chain(mine, theirs), batch_size=5000)
    our_keys = [
        generate_api_key(system, chitty_id=PRINCIPAL, name=f"bench {n}") for n in range(KEYS_PER_SIDE)
    ]
    peer_keys = [APIKey.objects.create_key(name=f"bench {n}")[1] for n in range(KEYS_PER_SIDE)]

    issued = generate_jwt(system, chitty_id=PRINCIPAL, expires_in="1h")
    template = verify_jwt(issued.token).claims
    revoked_jtis = [secrets.token_urlsafe(18) for _ in range(REVOKED_TOKENS)]
    RevokedToken.objects.bulk_create(
        RevokedToken(jti=jti, chitty_id=PRINCIPAL, expires_at=timezone.now() + timedelta(hours=2))
        for jti in revoked_jtis
    )
    invalidate_now(REVOKED_TOKENS_TOPIC)  # as the revocation service would: the revoked set is cached

    def mint(jti: str) -> str:
        """A token exactly like `generate_jwt`'s (same claims and header), with its own jti."""
        return jwt.encode(
            {**template, "jti": jti}, settings.JWT_SECRET, algorithm=HS256, headers={"typ": JWT_TYP}
        )

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return Fixture(
        identity=identity,
        our_key=our_keys[KEYS_PER_SIDE // 2].secret,
        peer_key=peer_keys[KEYS_PER_SIDE // 2],
        token=issued.token,
        revoked_token=mint(revoked_jtis[0]),
        distinct_tokens=[mint(secrets.token_urlsafe(18)) for _ in range(rounds * DISTINCT_TOKENS_PER_ROUND)],
        revoked_jtis=frozenset(revoked_jtis),
    )


def bare_jwt_check(revoked_jtis: frozenset[str], active_principals: frozenset[str]) -> Callable[[str], dict]:
    """PyJWT alone with our checks: signature (HS256 only), exp/nbf with leeway, iss, aud, the required
    claims, `typ`, and the revocation and active-principal checks as in-memory set lookups."""
    secret, audience, issuer, leeway = (
        settings.JWT_SECRET,
        settings.JWT_AUDIENCE,
        settings.JWT_ISSUER,
        leeway_seconds(),
    )
    options = {"require": list(REQUIRED_CLAIMS)}

    def check(token: str) -> dict:
        decoded = jwt.decode_complete(
            token,
            secret,
            algorithms=[HS256],
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options=options,
        )
        claims = decoded["payload"]
        if decoded["header"].get("typ") != JWT_TYP:
            raise jwt.InvalidTokenError("wrong typ")
        if claims["jti"] in revoked_jtis or claims["sub"] not in active_principals:
            raise jwt.InvalidTokenError("revoked, or principal not active")
        return claims

    return check


def orm_permission_query(identity_pk: int, permission: str, resource_id: str = "") -> bool:
    """The fairest one-query equivalent of `check_permission`: a live, unexpired grant of an active principal
    whose pattern covers `permission` (exactly, `resource:*`, `*:action`, `*:*` or `*`), unscoped or scoped to
    `resource_id`. Both databases answer it from an index on the principal (checked with EXPLAIN)."""
    resource, _, action = permission.partition(":")
    return (
        Grant.objects.filter(
            principal_id=identity_pk,
            principal__status=Identity.Status.ACTIVE,
            revoked_at__isnull=True,
            permission__in=(permission, f"{resource}:*", f"*:{action}", "*:*", "*"),
            resource_id__in={"", resource_id},
        )
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        .exists()
    )


def _check_answers(fixture: Fixture, bare_check: Callable[[str], dict]) -> None:
    _expect(verify_api_key(fixture.our_key).valid, "our key must verify")
    _expect(APIKey.objects.is_valid(fixture.peer_key), "the peer key must verify")
    _expect(verify_jwt(fixture.token).valid, "our token must verify")
    _expect(bare_check(fixture.token)["sub"] == PRINCIPAL, "bare PyJWT must accept our token")
    _expect(AccessToken(fixture.token)["sub"] == PRINCIPAL, "simplejwt must accept our token")
    _expect(verify_jwt(fixture.revoked_token).code == "REVOKED", "a revoked token must be refused")
    try:
        bare_check(fixture.revoked_token)
    except jwt.InvalidTokenError:
        pass
    else:
        raise SystemExit("bench precondition failed: bare PyJWT must refuse a revoked token")
    for permission, allowed in ((CHECKED_PERMISSION, True), (UNGRANTED_PERMISSION, False)):
        _expect(
            check_permission(fixture.identity, permission).allowed is allowed,
            f"check_permission {permission}",
        )
        _expect(orm_permission_query(fixture.identity.pk, permission) is allowed, f"ORM query {permission}")


def repeated(inputs: dict[str, tuple[object, int]]) -> Callable[[str, int], list[object]]:
    """Each contender's one input, `calls` times a round: the warm case, where our caches answer."""
    return lambda name, _round: [inputs[name][0]] * inputs[name][1]


def _forget_keys() -> None:
    """What a new process starts with: `verify_api_key`'s per-process snapshot cache is empty."""
    key_verification._cache.clear()


def _forget_keys_and_shared_cache() -> None:
    key_verification._cache.clear()
    cache.clear()


def measure(fixture: Fixture, rounds: int, *, shared_cache_is_redis: bool) -> list[dict]:
    """Every comparison of the issue's targets, as rows for the report (see `comparison`)."""
    bare_check = bare_jwt_check(fixture.revoked_jtis, frozenset({PRINCIPAL}))
    _check_answers(fixture, bare_check)
    results = []

    peer_is_valid = APIKey.objects.is_valid
    timings = interleaved(
        {"verify_api_key": verify_api_key, "APIKey.objects.is_valid": peer_is_valid},
        repeated(
            {
                "verify_api_key": (fixture.our_key, FAST_CALLS),
                "APIKey.objects.is_valid": (fixture.peer_key, SLOW_CALLS),
            }
        ),
        rounds,
    )
    results.append(
        comparison("API key, warm", timings, "APIKey.objects.is_valid", "verify_api_key", Target(">=", 20))
    )

    cold_contenders = {
        "verify_api_key": (_forget_keys_and_shared_cache, lambda: verify_api_key(fixture.our_key)),
        "APIKey.objects.is_valid": (cache.clear, lambda: peer_is_valid(fixture.peer_key)),
    }
    timings = interleaved_cold(cold_contenders, rounds, COLD_CALLS_PER_ROUND)
    results.append(
        comparison(
            "API key, cold (process and Django cache cleared)",
            timings,
            "APIKey.objects.is_valid",
            "verify_api_key",
            Target(">=", 1),
        )
    )
    if shared_cache_is_redis:
        cold_contenders = {
            "verify_api_key": (_forget_keys, lambda: verify_api_key(fixture.our_key)),
            "APIKey.objects.is_valid": (lambda: None, lambda: peer_is_valid(fixture.peer_key)),
        }
        timings = interleaved_cold(cold_contenders, rounds, COLD_CALLS_PER_ROUND)
        results.append(
            comparison(
                "API key, cold process (invalidation feed in Redis)",
                timings,
                "APIKey.objects.is_valid",
                "verify_api_key",
                Target(">=", 1),
            )
        )

    jwt_contenders = {
        "verify_jwt": verify_jwt,
        "bare PyJWT": bare_check,
        "simplejwt AccessToken": AccessToken,
    }
    same_token = repeated(
        {
            "verify_jwt": (fixture.token, FAST_CALLS),
            "bare PyJWT": (fixture.token, JWT_PEER_CALLS),
            "simplejwt AccessToken": (fixture.token, JWT_PEER_CALLS),
        }
    )
    timings = interleaved(jwt_contenders, same_token, rounds)
    results.append(
        comparison("JWT, warm (same token)", timings, "verify_jwt", "bare PyJWT", Target("<=", 1.5))
    )
    results.append(
        comparison("JWT, warm (same token)", timings, "simplejwt AccessToken", "verify_jwt", Target(">=", 1))
    )

    def distinct(_name: str, round_number: int) -> list[str]:
        start = round_number * DISTINCT_TOKENS_PER_ROUND
        return fixture.distinct_tokens[start : start + DISTINCT_TOKENS_PER_ROUND]

    timings = interleaved(jwt_contenders, distinct, rounds)
    results.append(
        comparison("JWT, a fresh token each call", timings, "verify_jwt", "bare PyJWT", Target("<=", 1.5))
    )
    results.append(
        comparison(
            "JWT, a fresh token each call", timings, "simplejwt AccessToken", "verify_jwt", Target(">=", 1)
        )
    )

    identity_pk = fixture.identity.pk
    timings = interleaved(
        {
            "check_permission": lambda permission: check_permission(fixture.identity, permission),
            "ORM query": lambda permission: orm_permission_query(identity_pk, permission),
        },
        repeated(
            {
                "check_permission": (CHECKED_PERMISSION, FAST_CALLS),
                "ORM query": (CHECKED_PERMISSION, SLOW_CALLS),
            }
        ),
        rounds,
    )
    results.append(
        comparison("Permission check, warm", timings, "ORM query", "check_permission", Target(">=", 20))
    )
    return results
