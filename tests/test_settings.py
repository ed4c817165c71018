"""Settings load fresh in a subprocess: production refuses to start on unsafe configuration, and passes
Django's deployment checks when configured properly."""

import base64
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.views.debug import ExceptionReporter

from chittyauth_site.settings import DEVELOPMENT_JWT_SECRET, DEVELOPMENT_SECRET_KEY
from tests.conftest import free_port

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
    "CHITTYAUTH_BASE_URL",
    "MCP_RESOURCE_URL",
    "JWT_SIGNING_ALGORITHM",
    "LOG_LEVEL",
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


@pytest.mark.parametrize("environment", ["prod", "Production", "staging", "dev"])
def test_an_unknown_environment_refuses_to_start_instead_of_running_as_development(tmp_path, environment):
    result = manage(tmp_path, {"ENVIRONMENT": environment}, "check")

    assert result.returncode != 0
    assert "ENVIRONMENT must be one of development, test, production" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("JWT_SIGNING_ALGORITHM", "RS256", "JWT_SIGNING_ALGORITHM must be one of HS256, EdDSA, ES256"),
        (
            "SIGNING_KEY_ENCRYPTION_KEY",
            "not-a-fernet-key",
            "SIGNING_KEY_ENCRYPTION_KEY item 1 is not a Fernet key",
        ),
        ("CHITTYAUTH_BASE_URL", "auth.example.com", "CHITTYAUTH_BASE_URL must be a http or https URL"),
        ("CHITTYAUTH_BASE_URL", "https://auth.example.com/v1", "CHITTYAUTH_BASE_URL must be an origin"),
        ("CHITTYAUTH_BASE_URL", "https://auth.example.com:port", "CHITTYAUTH_BASE_URL is not a valid URL"),
        ("MCP_RESOURCE_URL", "ws://auth.example.com/mcp", "MCP_RESOURCE_URL must be a http or https URL"),
        ("CHITTYID_ENDPOINT", "https://", "CHITTYID_ENDPOINT must name a host"),
        ("REDIS_URL", "http://127.0.0.1:6379", "REDIS_URL must be a redis or rediss or unix URL"),
        ("DATABASE_URL", "postgress://db/chittyauth", "DATABASE_URL is not a database URL Django can use"),
        ("DEBUG", "ture", "DEBUG must be one of 1, 0, true, false"),
        ("CHITTYID_TIMEOUT_SECONDS", "3s", "CHITTYID_TIMEOUT_SECONDS must be a number"),
        ("CHITTYID_TIMEOUT_SECONDS", "0", "CHITTYID_TIMEOUT_SECONDS must be greater than 0"),
        ("SESSION_TIMEOUT", "1h", "SESSION_TIMEOUT must be an integer"),
        ("SESSION_LIMIT_POLICY", "oldest", "SESSION_LIMIT_POLICY must be one of end_oldest, refuse_newest"),
        ("LOG_LEVEL", "verbose", "LOG_LEVEL must be one of DEBUG, INFO"),
        ("MAX_SESSIONS_PER_PRINCIPAL", "-1", "MAX_SESSIONS_PER_PRINCIPAL must be from 0 up, got -1"),
        ("JWT_DEFAULT_LIFETIME_SECONDS", "0", "JWT_DEFAULT_LIFETIME_SECONDS must be from 1 to 604800"),
        ("JWT_DEFAULT_LIFETIME_SECONDS", "604801", "JWT_DEFAULT_LIFETIME_SECONDS must be from 1 to 604800"),
        (
            "API_KEY_ROTATION_OVERLAP_SECONDS",
            "-5",
            "API_KEY_ROTATION_OVERLAP_SECONDS must be from 0 to 604800",
        ),
        ("API_KEY_USAGE_WRITE_SECONDS", "-1", "API_KEY_USAGE_WRITE_SECONDS must be from 0 up"),
        ("PROMETHEUS_MULTIPROC_DIR", "", "PROMETHEUS_MULTIPROC_DIR must be an absolute path"),
        ("PROMETHEUS_MULTIPROC_DIR", "var", "PROMETHEUS_MULTIPROC_DIR must be an absolute path"),
        (
            "PROMETHEUS_MULTIPROC_DIR",
            "/nonexistent",
            "PROMETHEUS_MULTIPROC_DIR must name an existing directory",
        ),
        ("prometheus_multiproc_dir", "/srv/metrics", "set PROMETHEUS_MULTIPROC_DIR instead"),
    ],
)
def test_a_bad_setting_stops_start_up_naming_the_variable(tmp_path, variable, value, named):
    result = manage(tmp_path, {variable: value}, "check")

    assert result.returncode != 0
    assert named in result.stderr


def test_a_bad_signing_key_encryption_key_stops_production_before_any_token_is_minted(tmp_path):
    result = manage(tmp_path, {**proper_production(), "SIGNING_KEY_ENCRYPTION_KEY": "x" * 44}, "check")

    assert result.returncode != 0
    assert "SIGNING_KEY_ENCRYPTION_KEY item 1 is not a Fernet key" in result.stderr
    assert "x" * 44 not in result.stderr


def test_a_url_whose_port_does_not_parse_is_refused_without_echoing_it(tmp_path):
    result = manage(tmp_path, {"REDIS_URL": "redis://default:S3cret-host:6379"}, "check")

    assert result.returncode != 0
    assert "REDIS_URL is not a valid URL" in result.stderr
    assert "S3cret" not in result.stderr


def test_production_refuses_a_csrf_trusted_origin_without_a_scheme(tmp_path):
    result = manage(tmp_path, {**proper_production(), "CSRF_TRUSTED_ORIGINS": "auth.example.com"}, "check")

    assert result.returncode != 0
    assert "CSRF_TRUSTED_ORIGINS entries must start with https://" in result.stderr


def test_a_refused_url_is_never_echoed_with_its_password(tmp_path):
    result = manage(tmp_path, {"REDIS_URL": "http://:hunter2-secret@127.0.0.1:6379"}, "check")

    assert result.returncode != 0
    assert "REDIS_URL must be" in result.stderr
    assert "hunter2-secret" not in result.stderr + result.stdout


def test_the_deployment_checks_name_the_development_secrets(tmp_path):
    result = manage(tmp_path, {}, "check", "--deploy")

    assert "(chittyauth.W001) JWT_SECRET is the published development value" in result.stdout + result.stderr
    assert "(chittyauth.W001) SECRET_KEY is the published development value" in result.stdout + result.stderr


def daphne(tmp_path: Path, configuration: dict[str, str], host: str, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in CONFIGURATION}
    env.update(configuration, CHITTYAUTH_VAR_DIR=str(tmp_path))
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "daphne"),
            "-b",
            host,
            "-p",
            str(port),
            "chittyauth_site.asgi:application",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])  # noqa: S104 - the bind being refused
def test_daphne_refuses_to_listen_beyond_loopback_with_the_development_secrets(tmp_path, host):
    process = daphne(tmp_path, {}, host, free_port())
    try:
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()

    assert process.returncode != 0
    assert (
        f"Refusing to listen on {host}: SECRET_KEY and JWT_SECRET still hold the published development"
        in output
    )


def test_daphne_listens_beyond_loopback_once_real_secrets_are_set(tmp_path):
    port = free_port()
    secrets_set = {"SECRET_KEY": secrets.token_urlsafe(64), "JWT_SECRET": secrets.token_urlsafe(48)}
    process = daphne(tmp_path, secrets_set, "0.0.0.0", port)  # noqa: S104
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                    assert response.status == 200
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "daphne did not answer"
                time.sleep(0.3)
    finally:
        process.kill()
        process.communicate()


CARRIED_IN_URLS = {
    "DATABASE_URL": "postgres://chitty:db-password-1@db.internal/chittyauth",
    "REDIS_URL": "redis://:redis-password-2@cache.internal:6379/0",
    "AUDIT_WEBHOOK_URL": "https://siem.example/hook?token=webhook-token-3",
    "AUDIT_SYSLOG_URL": "tls://collector:collector-password-4@siem.example:6514",
    "CELERY_BROKER_URL": "redis://:broker-password-5@cache.internal:6379/1",
    "CHITTYID_ENDPOINT": "https://user:authority-password-6@id.chitty.cc",
}
SECRETS_IN_URLS = (
    "db-password-1",
    "redis-password-2",
    "webhook-token-3",
    "collector-password-4",
    "broker-password-5",
    "authority-password-6",
)


@pytest.fixture
def credentials_in_url_settings(settings):
    for name, value in CARRIED_IN_URLS.items():
        setattr(settings, name, value)


def test_error_reports_hide_credentials_carried_in_url_settings(credentials_in_url_settings, rf):
    """Django's error reports (the DEBUG page, mails to ADMINS) list the settings; a URL can hold a password.
    (The secrets live outside this frame: a report also shows the local variables of every frame.)"""
    try:
        raise RuntimeError("a failure to report")
    except RuntimeError:
        reporter = ExceptionReporter(rf.get("/api/v1/whoami"), *sys.exc_info())
    report = reporter.get_traceback_html() + reporter.get_traceback_text()
    for name in CARRIED_IN_URLS:
        assert name in report, f"{name} should still be listed, its value hidden"
    for secret in SECRETS_IN_URLS:
        assert secret not in report
