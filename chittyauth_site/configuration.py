"""Reading and checking configuration from the environment, so a mistake stops start-up naming the variable
instead of surfacing as a 500 at first use (or, worse, as silently insecure defaults)."""

import base64
import ipaddress
import os
from urllib.parse import urlparse

from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

ENVIRONMENTS = ("development", "test", "production")
SIGNING_ALGORITHMS = ("HS256", "EdDSA", "ES256")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, "") or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value not in _TRUE | _FALSE:
        raise ImproperlyConfigured(
            f"{name} must be one of 1, 0, true, false, yes, no, on, off; got {value!r}"
        )
    return value in _TRUE


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = os.environ.get(name, "")
    if value == "":
        return default
    try:
        number = int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from exc
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        bounds = f"from {minimum}" + (f" to {maximum}" if maximum is not None else " up")
        raise ImproperlyConfigured(f"{name} must be {bounds}, got {number}")
    return number


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    if value == "":
        return default
    try:
        number = float(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from exc
    if not number > 0:
        raise ImproperlyConfigured(f"{name} must be greater than 0, got {value!r}")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_url(
    name: str, default: str, *, schemes: tuple[str, ...] = ("http", "https"), origin: bool = False
) -> str:
    """A URL with one of `schemes` and a host; `origin` also refuses a path, query or fragment. Messages never
    echo the URL: it may carry a password."""
    value = (os.environ.get(name, "") or default).rstrip("/")
    if not value:
        return value
    try:
        parsed = urlparse(value)
        parsed.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        # urllib's message quotes the part it failed on, which can be a password.
        raise ImproperlyConfigured(f"{name} is not a valid URL (its host or port does not parse)") from None
    if parsed.scheme not in schemes:
        raise ImproperlyConfigured(
            f"{name} must be a {' or '.join(schemes)} URL, not {parsed.scheme or 'one without a scheme'!r}"
        )
    if not parsed.hostname and parsed.scheme != "unix":
        raise ImproperlyConfigured(f"{name} must name a host")
    if origin and (parsed.path or parsed.query or parsed.fragment):
        raise ImproperlyConfigured(f"{name} must be an origin (scheme, host and port only, no path or query)")
    return value


def prometheus_multiprocess_dir() -> str:
    """`PROMETHEUS_MULTIPROC_DIR`, or "" when unset. prometheus-client enters multiprocess mode when the variable
    is merely present (blank too, and under its lower-case legacy name), writing into whatever directory the
    process runs in, so those are refused; a relative path would differ between processes started elsewhere."""
    name = "PROMETHEUS_MULTIPROC_DIR"
    if "prometheus_multiproc_dir" in os.environ:
        raise ImproperlyConfigured(f"prometheus_multiproc_dir is the deprecated name; set {name} instead")
    if name not in os.environ:
        return ""
    value = os.environ[name]
    if not os.path.isabs(value):
        raise ImproperlyConfigured(f"{name} must be an absolute path (unset it to count per process)")
    if not (os.path.isdir(value) and os.access(value, os.W_OK | os.X_OK)):
        raise ImproperlyConfigured(f"{name} must name an existing directory this process can write to")
    return value


def check_fernet_keys(name: str, value: str) -> None:
    """Each comma-separated item must be a Fernet key. The message never echoes the value: it is a secret."""
    for position, item in enumerate((part.strip() for part in value.split(",") if part.strip()), start=1):
        try:
            Fernet(item)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} item {position} is not a Fernet key (32 url-safe base64-encoded bytes); "
                "make one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
            ) from None


WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
WEBHOOK_SECRET_MIN_BYTES = 24


def check_webhook_sink(url_name: str, url: str, secret_name: str, secret: str) -> None:
    """A webhook gets audit events only over HTTPS (plain HTTP to a loopback receiver), and only signed with a
    Standard Webhooks secret of at least 24 bytes. Messages never echo the secret."""
    if not url:
        if secret:
            raise ImproperlyConfigured(f"{secret_name} is set but {url_name} is not")
        return
    parsed = urlparse(url)
    if parsed.scheme != "https" and not is_loopback(parsed.hostname or ""):
        raise ImproperlyConfigured(f"{url_name} must be an https URL (plain http only to a loopback address)")
    if not secret:
        raise ImproperlyConfigured(f"{url_name} needs {secret_name} to sign what it is sent")
    try:
        key = base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)
    except ValueError:
        key = b""
    if not secret.startswith(WEBHOOK_SECRET_PREFIX) or len(key) < WEBHOOK_SECRET_MIN_BYTES:
        raise ImproperlyConfigured(
            f"{secret_name} must be {WEBHOOK_SECRET_PREFIX} and the base64 of at least "
            f"{WEBHOOK_SECRET_MIN_BYTES} random bytes; make one with: python -c 'import base64, os; "
            f'print("{WEBHOOK_SECRET_PREFIX}" + base64.b64encode(os.urandom(32)).decode())\''
        )


def is_loopback(host: str) -> bool:
    """True for loopback addresses and `localhost`; a wildcard bind (`0.0.0.0`, `::`) is not loopback."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
