"""Settings load fresh in a subprocess: production refuses to start on unsafe configuration, and passes
Django's deployment checks when configured properly."""

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from chittyauth_site.settings import DEVELOPMENT_JWT_SECRET, DEVELOPMENT_SECRET_KEY

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGURATION = (
    "ENVIRONMENT",
    "DEBUG",
    "SECRET_KEY",
    "JWT_SECRET",
    "SIGNING_KEY_ENCRYPTION_KEY",
    "ALLOWED_HOSTS",
    "DATABASE_URL",
    "REDIS_URL",
    "CHITTYID_ENDPOINT",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "DJANGO_SETTINGS_MODULE",
)


def proper_production() -> dict[str, str]:
    return {
        "ENVIRONMENT": "production",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "JWT_SECRET": secrets.token_urlsafe(48),
        "SIGNING_KEY_ENCRYPTION_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "ALLOWED_HOSTS": "auth.example.com,testserver",
    }


def run_with(tmp_path: Path, configuration: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`manage.py *args` in a fresh interpreter with exactly this configuration (nothing inherited)."""
    env = {k: v for k, v in os.environ.items() if k not in CONFIGURATION}
    env.update(configuration, CHITTYAUTH_VAR_DIR=str(tmp_path))
    return subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def manage(tmp_path: Path, configuration: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return run_with(tmp_path, configuration, "manage.py", *args)


def test_properly_configured_production_passes_the_deployment_checks(tmp_path):
    result = manage(tmp_path, proper_production(), "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY must be set"),
        ({"SECRET_KEY": DEVELOPMENT_SECRET_KEY}, "SECRET_KEY must be set"),
        ({"SECRET_KEY": "short-" + "x" * 40}, "SECRET_KEY must be set to a random value of at least 50"),
        ({"JWT_SECRET": None}, "JWT_SECRET must be set"),
        ({"JWT_SECRET": DEVELOPMENT_JWT_SECRET}, "JWT_SECRET must be set"),
        ({"JWT_SECRET": "x" * 31}, "JWT_SECRET must be set to a random value of at least 32 bytes"),
        ({"SIGNING_KEY_ENCRYPTION_KEY": None}, "SIGNING_KEY_ENCRYPTION_KEY must be set"),
        ({"SIGNING_KEY_ENCRYPTION_KEY": ""}, "SIGNING_KEY_ENCRYPTION_KEY must be set"),
        ({"DEBUG": "1"}, "DEBUG must be off"),
        ({"DEBUG": "true"}, "DEBUG must be off"),
        ({"ALLOWED_HOSTS": None}, "ALLOWED_HOSTS must name this service's host names"),
    ],
)
def test_production_refuses_to_start_on_unsafe_configuration(tmp_path, change, named):
    configuration = proper_production()
    for name, value in change.items():
        if value is None:
            configuration.pop(name)
        else:
            configuration[name] = value

    result = manage(tmp_path, configuration, "check")

    assert result.returncode != 0
    assert "ImproperlyConfigured: Refusing to start in production" in result.stderr
    assert named in result.stderr


def test_production_names_every_problem_at_once(tmp_path):
    result = manage(tmp_path, {"ENVIRONMENT": "production", "DEBUG": "1"}, "check")

    assert result.returncode != 0
    for named in ("SECRET_KEY", "JWT_SECRET", "SIGNING_KEY_ENCRYPTION_KEY", "DEBUG", "ALLOWED_HOSTS"):
        assert f"{named} must" in result.stderr


def test_production_never_echoes_the_secrets_it_refuses(tmp_path):
    configuration = {**proper_production(), "JWT_SECRET": "tooshort-but-secret", "DEBUG": "1"}

    result = manage(tmp_path, configuration, "check")

    assert result.returncode != 0
    assert "tooshort-but-secret" not in result.stderr + result.stdout


@pytest.mark.parametrize("jwt_secret", ["x" * 31, "é" * 15])
def test_a_jwt_secret_under_32_bytes_is_refused_even_in_development(tmp_path, jwt_secret):
    result = manage(tmp_path, {"JWT_SECRET": jwt_secret}, "check")

    assert result.returncode != 0
    assert "JWT_SECRET must be at least 32 bytes" in result.stderr


def test_a_32_byte_jwt_secret_is_accepted_in_development(tmp_path):
    result = manage(tmp_path, {"JWT_SECRET": "é" * 16}, "check")

    assert result.returncode == 0, result.stderr


def test_production_health_probes_answer_over_plain_http_while_everything_else_redirects(tmp_path):
    """Load balancers probe nodes over plain HTTP; the rest of the service insists on HTTPS."""
    script = (
        "import django; django.setup()\n"
        "from django.test import Client\n"
        "client = Client()\n"
        "print(client.get('/healthz').status_code)\n"
        "print(client.get('/admin/login/').status_code)\n"
        "print(client.get('/admin/login/', headers={'X-Forwarded-Proto': 'https'}).status_code)\n"
    )
    configuration = {**proper_production(), "DJANGO_SETTINGS_MODULE": "chittyauth_site.settings"}

    result = run_with(tmp_path, configuration, "-c", script)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["200", "301", "200"]
