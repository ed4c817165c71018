"""The console's lists at 1440 px in Chromium: every column (status, last use, outcome, address) is on screen
with the navigation sidebar open, and every time is shown to the second with its zone."""

import re

import pytest
from playwright.sync_api import Page

from audit.services import record
from grants.services import grant_permission
from identities.models import Identity
from jobs.services import run_cleanup
from kernel.callers import Caller
from keys.services import generate_api_key, verify_api_key
from keys.signing_keys import rotate_signing_key
from keys.tokens import generate_jwt, revoke_jwt
from oauth.clients import create_service_client
from sessions.models import AuthSession
from sessions.services import open_session
from tests.browser.test_admin_e2e import in_database, log_in, page, shoot, staff_account  # noqa: F401

SYSTEM = Caller.system("browser-tests")
# Long but ordinary values: a ChittyID of the longest kind seen, a key name a person would type.
PRINCIPAL = "CHITTY-CONTEXT-ACMECORPORATION-12345"
LISTS = {
    "keys": "/admin/keys/apikey/",
    "sessions": "/admin/auth_sessions/authsession/",
    "audit": "/admin/audit/auditevent/",
    "identities": "/admin/identities/identity/",
    "grants": "/admin/grants/grant/",
    "oauth-clients": "/admin/oauth/client/",
    "jobs": "/admin/jobs/jobrun/",
    "revoked-tokens": "/admin/keys/revokedtoken/",
    "signing-keys": "/admin/keys/signingkey/",
}
FULL_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC")
MINUTES_ONLY = re.compile(r"\b\d{1,2}:\d{2}(?!:)\s*(a\.m\.|p\.m\.)", re.IGNORECASE)


@pytest.fixture
def rows(transactional_db) -> None:
    def make() -> None:
        identity = Identity.objects.create(
            chitty_id=PRINCIPAL, entity_type="CONTEXT", display_name="Acme Corporation International Holdings"
        )
        grant_permission(SYSTEM, grantee_chitty_id=PRINCIPAL, permission="documents:read")
        issued = generate_api_key(
            SYSTEM, chitty_id=PRINCIPAL, name="deployment pipeline for production", scopes=["documents:read"]
        )
        verify_api_key(issued.secret)
        caller = Caller(PRINCIPAL, identity, "api_key", issued.api_key.key_id, client_address="2001:db8::1")
        open_session(caller, AuthSession.Channel.MCP_WEBSOCKET)
        record(
            "auth.failed",
            outcome="failure",
            actor=PRINCIPAL,
            target="api_key:" + issued.api_key.key_id,
            client_address="2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
        )
        create_service_client(SYSTEM, chitty_id=PRINCIPAL, name="reporting integration", scopes=["*"])
        revoke_jwt(SYSTEM, jti=generate_jwt(SYSTEM, chitty_id=PRINCIPAL).jti, reason="laptop stolen")
        rotate_signing_key(SYSTEM, "EdDSA")
        run_cleanup(SYSTEM)

    in_database(make)


def columns_off_screen(browser_page: Page) -> list[str]:
    """Headers of the result list not wholly in view: past the edge of the window or of the scrolling box
    Django puts the list in (which hides them until staff scroll it sideways)."""
    return browser_page.evaluate(
        """() => {
            const table = document.querySelector('#result_list');
            const box = table.parentElement.getBoundingClientRect();
            const edge = Math.min(window.innerWidth, box.right);
            return [...table.querySelectorAll('thead th')]
                .filter((th) => th.getBoundingClientRect().right > edge + 0.5)
                .map((th) => th.innerText.trim());
        }"""
    )


def test_every_list_fits_1440px_and_shows_full_times_with_the_zone(page, staff_account, rows):  # noqa: F811
    log_in(page)
    assert page.viewport_size == {"width": 1440, "height": 900}

    problems = {}
    for name, path in LISTS.items():
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        assert page.locator("#nav-sidebar").is_visible(), "the lists must fit with the sidebar open"
        shoot(page, f"list-{name}")
        assert page.locator("#result_list").count() == 1, f"{name}: no rows to look at"
        table = page.locator("#result_list").inner_text()
        found = {
            "off screen": columns_off_screen(page),
            "page scrolls sideways": not page.evaluate("document.documentElement.scrollWidth <= innerWidth"),
            "time without seconds": bool(MINUTES_ONLY.search(table)),
            "no full time with zone": not FULL_TIME.search(table),
        }
        if any(found.values()):
            problems[name] = {problem: detail for problem, detail in found.items() if detail}
    assert problems == {}
