"""The ChittyID authority: the remote service when `CHITTYID_ENDPOINT` is set, else our registered identities.

The remote client fails closed. Timeouts, refused connections, 5xx and unreadable answers raise
`AuthorityUnavailable` after bounded retries; only a 2xx answer with `"valid": true` makes an ID valid.
"""

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from enum import StrEnum

import httpx
from django.conf import settings
from django.core.cache import cache

from kernel.errors import AuthorityUnavailable
from kernel.metrics import AUTHORITY_CALL_DURATION, AUTHORITY_CALLS

logger = logging.getLogger(__name__)


class Verdict(StrEnum):
    VALID = "VALID"
    REJECTED = "REJECTED"  # the authority answered valid: false, or the identity is not active here
    NOT_FOUND = "NOT_FOUND"  # the authority does not know the ID


@dataclass(frozen=True)
class AuthorityAnswer:
    verdict: Verdict
    source: str
    reason: str = ""

    @property
    def is_valid(self) -> bool:
        return self.verdict is Verdict.VALID


_client_lock = threading.Lock()
_client: httpx.Client | None = None


def _http_client() -> httpx.Client:
    """One pooled client per process; httpx.Client is safe to share between threads.

    Timeouts are given per request, so a changed `CHITTYID_TIMEOUT_SECONDS` applies at once.
    """
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(
                limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
                follow_redirects=False,
            )
        return _client


def is_remote() -> bool:
    return bool(settings.CHITTYID_ENDPOINT)


def _cache_key(chitty_id: str) -> str:
    return "chittyid:verdict:" + hashlib.sha256(chitty_id.encode()).hexdigest()


def verify_chitty_id(chitty_id: str, *, bypass_cache: bool = False) -> AuthorityAnswer:
    """Ask the configured authority whether `chitty_id` is a real, active ChittyID."""
    if not is_remote():
        return _verify_locally(chitty_id)
    key = _cache_key(chitty_id)
    if not bypass_cache:
        cached = _cache_call(cache.get, key)
        if cached is not None:
            return AuthorityAnswer(Verdict(cached[0]), "remote", cached[1])
    answer = _verify_remotely(chitty_id)
    _cache_call(cache.set, key, (answer.verdict.value, answer.reason), settings.CHITTYID_CACHE_SECONDS)
    return answer


def _cache_call(method, *args):
    """The answer cache is an optimization: when the shared cache is down, ask the authority every time."""
    try:
        return method(*args)
    except Exception:  # noqa: BLE001
        logger.warning("ChittyID answer cache unavailable")
        return None


def _verify_locally(chitty_id: str) -> AuthorityAnswer:
    from identities.models import Identity

    identity = Identity.objects.filter(chitty_id=chitty_id).only("status").first()
    if identity is None:
        return AuthorityAnswer(Verdict.NOT_FOUND, "local", "not registered with this service")
    if not identity.is_active:
        return AuthorityAnswer(Verdict.REJECTED, "local", f"identity is {identity.status}")
    return AuthorityAnswer(Verdict.VALID, "local")


def _verify_remotely(chitty_id: str) -> AuthorityAnswer:
    url = f"{settings.CHITTYID_ENDPOINT}/v1/verify"
    headers = {"Authorization": f"Bearer {settings.CHITTYID_API_KEY}", "Accept": "application/json"}
    attempts = 1 + max(settings.CHITTYID_RETRIES, 0)
    failure = ""
    for attempt in range(attempts):
        if attempt:
            time.sleep(min(0.1 * 2 ** (attempt - 1), 1.0))
        started, outcome = time.perf_counter(), "unusable_answer"
        try:
            response = _http_client().post(
                url, json={"chitty_id": chitty_id}, headers=headers, timeout=settings.CHITTYID_TIMEOUT_SECONDS
            )
            if response.status_code >= 500:
                failure, outcome = f"answered HTTP {response.status_code}", "server_error"
                continue
            if response.is_client_error and response.status_code != 404:
                outcome = "client_error"  # our configuration (the bearer, the URL), not the ID
            answer = _interpret(response)
            outcome = answer.verdict.lower()
            return answer
        except httpx.TimeoutException:
            failure, outcome = "timed out", "timeout"
        except httpx.HTTPError as exc:
            failure, outcome = f"could not connect ({type(exc).__name__})", "connect_error"
        finally:
            AUTHORITY_CALLS.labels(outcome).inc()
            AUTHORITY_CALL_DURATION.observe(time.perf_counter() - started)
    logger.warning("ChittyID authority unavailable after %d attempts: %s", attempts, failure)
    raise AuthorityUnavailable(f"ChittyID authority unavailable: {failure}", reason=failure)


def _interpret(response: httpx.Response) -> AuthorityAnswer:
    if response.status_code == 404:
        return AuthorityAnswer(Verdict.NOT_FOUND, "remote", "the authority does not know this ChittyID")
    if not response.is_success:
        # 401/403/other 4xx: our configuration is wrong; that is not an answer about the ID.
        raise AuthorityUnavailable(
            f"ChittyID authority unavailable: answered HTTP {response.status_code}",
            reason=f"answered HTTP {response.status_code}",
        )
    try:
        body = response.json()
    except ValueError:
        raise AuthorityUnavailable(
            "ChittyID authority unavailable: the answer was not JSON", reason="unreadable answer"
        ) from None
    if not isinstance(body, dict) or not isinstance(body.get("valid"), bool):
        raise AuthorityUnavailable(
            "ChittyID authority unavailable: the answer had no boolean 'valid'", reason="unreadable answer"
        )
    if body["valid"]:
        return AuthorityAnswer(Verdict.VALID, "remote")
    return AuthorityAnswer(Verdict.REJECTED, "remote", str(body.get("reason") or "the authority rejected it"))


def check_reachable() -> tuple[bool, str]:
    """For readiness: is the authority answering at all? Local authority always is."""
    if not is_remote():
        return True, "local"
    try:
        response = _http_client().get(f"{settings.CHITTYID_ENDPOINT}/health", timeout=2.0)
    except httpx.HTTPError as exc:
        return False, f"unreachable ({type(exc).__name__})"
    if response.status_code >= 500:
        return False, f"answered HTTP {response.status_code}"
    return True, "remote"
