"""Every HTML page carries a Content-Security-Policy that runs no inline script and loads nothing from
elsewhere, and the API docs' assets are served by this service, not a CDN."""

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

pytestmark = pytest.mark.django_db


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


@pytest.fixture
def console() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.org", "root-password-long-1"))
    return client


@pytest.mark.parametrize(
    "path",
    [
        "/admin/",
        "/admin/dashboard/",
        "/admin/keys/apikey/",
        "/admin/keys/apikey/add/",
        "/admin/audit/auditevent/",
        "/admin/auth/user/",
        "/admin/django_celery_beat/periodictask/",
        "/api/docs/",
    ],
)
def test_every_html_page_forbids_inline_and_foreign_scripts(console, path):
    response = console.get(path)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    policy = directives(response)
    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    body = response.content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", body), "an inline script would be blocked"
    assert not re.search(r"\son[a-z]+=\"", body), "an inline event handler would be blocked"


def test_the_login_page_carries_the_policy_too():
    response = Client().get("/admin/login/")

    assert directives(response)["script-src"] == ["'self'"]


def test_the_api_docs_load_swagger_ui_from_this_service():
    page = Client().get("/api/docs/").content.decode()

    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', page)
    assert any("swagger-ui-bundle.js" in source for source in sources)
    assert all(source.startswith("/") and not source.startswith("//") for source in sources), sources
    assert "cdn.jsdelivr.net" not in page and "unpkg" not in page
