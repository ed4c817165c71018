"""Pages in a real browser under the Content-Security-Policy: nothing is blocked, and the API docs render
from this service's own assets (this machine cannot reach a CDN)."""

from playwright.sync_api import Page, expect

from tests.browser.test_admin_e2e import log_in, page, shoot, staff_account  # noqa: F401 - fixtures

PAGES = [
    "/admin/",
    "/admin/dashboard/",
    "/admin/audit/auditevent/",
    "/admin/keys/apikey/",
    "/admin/keys/apikey/add/",
    "/admin/identities/identity/",
    "/admin/auth/user/add/",
    "/admin/django_celery_beat/periodictask/",
]


def blocked_by_policy(browser_page: Page) -> list[str]:
    blocked: list[str] = []
    browser_page.on(
        "console",
        lambda message: blocked.append(message.text) if "Content Security Policy" in message.text else None,
    )
    return blocked


def test_console_pages_run_with_nothing_blocked_by_the_policy(page, staff_account):  # noqa: F811
    blocked = blocked_by_policy(page)
    failed: list[str] = []
    page.on("response", lambda response: failed.append(response.url) if response.status >= 400 else None)
    log_in(page)

    for path in PAGES:
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_load_state("networkidle")

    shoot(page, "csp-console")
    assert blocked == []
    assert failed == []  # every stylesheet and script the pages name is served


def test_the_api_docs_render_offline_from_local_assets(page):  # noqa: F811
    blocked = blocked_by_policy(page)
    foreign: list[str] = []
    page.on(
        "request",
        lambda request: (
            foreign.append(request.url)
            if "127.0.0.1" not in request.url and "localhost" not in request.url
            else None
        ),
    )

    page.goto("/api/docs/")

    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    expect(page.locator(".swagger-ui")).to_contain_text("ChittyAuth API")
    shoot(page, "api-docs")
    assert blocked == []
    assert foreign == []
