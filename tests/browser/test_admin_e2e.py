"""The admin console end to end: Debian's Chromium, driven by Playwright, against a live server.

Each step saves a screenshot to test-artifacts/screenshots/, named by step, for people to look at. In CI a
missing Chromium fails the run; elsewhere these tests are skipped with the reason.
"""

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.utils import timezone
from playwright.sync_api import Page, expect, sync_playwright

from audit.models import AuditEvent
from grants.services import grant_permission
from identities.models import Identity
from kernel.callers import Caller
from keys.services import generate_api_key
from tests.conftest import IN_CI

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
ADMIN_USERNAME = "security-admin"
ADMIN_PASSWORD = "correct-horse-battery-staple-42"
VALIDATOR = "CHITTY-PEO-VALIDATOR-1"
SYSTEM = Caller.system("browser-tests")
SECRET_RE = re.compile(r"^chitty_live_[0-9A-Za-z]{49}$")
T = TypeVar("T")


def in_database(work: Callable[[], T]) -> T:
    """Run ORM work on a thread of its own. Playwright's sync API runs an event loop on the test's thread,
    where Django refuses the ORM (and, if forced, opens a connection nobody closes)."""

    def run() -> T:
        try:
            return work()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


@pytest.fixture
def staff_account(transactional_db) -> None:
    in_database(
        lambda: get_user_model().objects.create_superuser(
            ADMIN_USERNAME, "security@example.org", ADMIN_PASSWORD
        )
    )


@pytest.fixture
def validator_key(transactional_db) -> str:
    """A service principal that may validate anyone's key over REST, as a relying service would."""

    def principal_that_validates() -> str:
        Identity.objects.create(chitty_id=VALIDATOR, entity_type="PEO")
        grant_permission(SYSTEM, grantee_chitty_id=VALIDATOR, permission="api_keys:validate")
        return generate_api_key(SYSTEM, chitty_id=VALIDATOR, scopes=["api_keys:validate"]).secret

    return in_database(principal_that_validates)


@pytest.fixture
def page(live_server, transactional_db) -> Page:
    """A fresh browser page on the live server; it closes before the database is reset."""
    if not CHROMIUM.exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing: CI must install Debian's chromium and chromium-driver")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium chromium-driver)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=live_server.url, viewport={"width": 1440, "height": 900})
        context.set_default_timeout(10_000)
        yield context.new_page()
        context.close()
        browser.close()


def shoot(page: Page, step: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{step}.png"), full_page=True)


def log_in(page: Page, password: str = ADMIN_PASSWORD) -> None:
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", ADMIN_USERNAME)
    page.fill("#id_password", password)
    page.click("input[type=submit]")


def validate_over_rest(live_server, validator_key: str, api_key: str) -> dict:
    response = httpx.post(
        f"{live_server.url}/api/v1/keys/validate",
        headers={"Authorization": f"Bearer {validator_key}"},
        json={"api_key": api_key},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_a_key_from_registration_to_revocation(page, live_server, staff_account, validator_key):
    chitty_id = "CHITTY-PEO-BROWSER-1"

    page.goto("/admin/login/?next=/admin/")
    shoot(page, "01-login")
    log_in(page)
    expect(page.locator("#dashboard-link")).to_be_visible()
    shoot(page, "02-index")

    page.goto("/admin/identities/identity/add/")
    page.fill("#id_chitty_id", chitty_id)
    page.fill("#id_display_name", "Browser Test Person")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    shoot(page, "03-identity-registered")

    page.goto("/admin/grants/grant/add/")
    page.fill("#id_chitty_id", chitty_id)
    page.fill("#id_permission", "documents:read")
    page.click("input[name=_save]")
    expect(page.locator("#result_list")).to_contain_text("documents:read")
    shoot(page, "04-permission-granted")

    expires = timezone.now() + timedelta(days=30)
    page.goto("/admin/keys/apikey/add/")
    page.fill("#id_chitty_id", chitty_id)
    page.fill("#id_name", "browser test key")
    page.fill("#id_scopes_text", "documents:read")
    page.fill("#id_expires_at_0", expires.strftime("%Y-%m-%d"))
    page.fill("#id_expires_at_1", "12:00:00")
    page.click("input[name=_save]")
    expect(page.locator("#shown-once")).to_contain_text("only time the key is shown")
    secret = page.locator("input.api-key-secret").input_value()
    key_id = page.locator("code.key-id").inner_text()
    assert SECRET_RE.match(secret)
    page.click("button.copy-secret")  # the page's own script (served by the app) copies it
    expect(page.locator("button.copy-secret")).to_have_text("Copied")
    shoot(page, "05-key-shown-once")

    valid = validate_over_rest(live_server, validator_key, secret)
    assert (valid["valid"], valid["code"], valid["chitty_id"], valid["scopes"]) == (
        True,
        "VALID",
        chitty_id,
        ["documents:read"],
    )

    page.click("text=I have stored it")
    page.click(f"#result_list a:text-is('{key_id}')")
    assert secret not in page.content()
    page.click("a.revoke-link")
    expect(page.locator(".errornote")).to_contain_text("cannot be undone")
    shoot(page, "06-revoke-confirmation")
    page.fill("#id_reason", "leaked in a build log")
    page.click("input[value='Yes, revoke']")
    expect(page.locator(".messagelist")).to_contain_text(f"Revoked {key_id}.")
    shoot(page, "07-key-revoked")

    revoked = validate_over_rest(live_server, validator_key, secret)
    assert (revoked["valid"], revoked["code"]) == (False, "REVOKED")

    page.goto("/admin/audit/auditevent/")
    page.fill("#audit-filters input[name=identity]", chitty_id)
    page.select_option("#audit-filters select[name=outcome]", "")
    page.click("#audit-filters input[type=submit]")
    expect(page).to_have_url(re.compile(rf"\?identity={chitty_id}$"))
    listing = page.locator("#result_list")
    expect(listing).to_contain_text("api_key.revoke")
    expect(listing).to_contain_text("api_key.validate")
    expect(listing.locator("tr", has_text="api_key.validate")).to_contain_text("Failure")
    shoot(page, "08-audit-trail")

    page.click("#result_list tr:has-text('api_key.revoke') th a")
    expect(page.locator(".field-details_json")).to_contain_text("leaked in a build log")
    expect(page.locator(".field-previous_event .chain-ok")).to_be_visible()
    expect(page.locator(".field-integrity .chain-ok")).to_be_visible()
    shoot(page, "09-audit-event")
    revoke_sequence = int(page.locator(".field-sequence .readonly").inner_text())
    page.click("a.previous-event")
    expect(page.locator(".field-sequence .readonly")).to_have_text(str(revoke_sequence - 1))

    page.goto("/admin/dashboard/")
    expect(page.locator("#panel-identities .big-number")).to_have_text("2")
    expect(page.locator("#chain-verdict")).to_contain_text("Not checked recently")
    shoot(page, "10-dashboard")
    page.click("#verify-chain")
    expect(page.locator("#chain-verdict")).to_contain_text("Intact")
    shoot(page, "11-chain-verified")


def test_suspending_shows_the_cascade_before_it_stops_anything(
    page, live_server, staff_account, validator_key
):
    chitty_id = "CHITTY-PEO-SUSPECT-1"

    def principal_with_keys_and_a_session() -> tuple[Identity, list]:
        identity = Identity.objects.create(chitty_id=chitty_id, entity_type="PEO")
        grant_permission(SYSTEM, grantee_chitty_id=chitty_id, permission="documents:*")
        grant_permission(SYSTEM, grantee_chitty_id=chitty_id, permission="api_keys:generate")
        return identity, [
            generate_api_key(SYSTEM, chitty_id=chitty_id, scopes=["documents:read"]) for _ in range(3)
        ]

    identity, keys = in_database(principal_with_keys_and_a_session)
    whoami = httpx.get(
        f"{live_server.url}/api/v1/whoami", headers={"Authorization": f"Bearer {keys[0].secret}"}, timeout=10
    )
    assert whoami.json()["session_id"]  # a live REST session

    log_in(page)
    page.goto(f"/admin/identities/identity/{identity.pk}/change/")
    page.click("a.suspend-link")
    cascade = page.locator("#cascade tbody tr")
    expect(cascade.locator(".api-keys")).to_have_text("3")
    expect(cascade.locator(".grants")).to_have_text("2")
    expect(cascade.locator(".sessions")).to_have_text("1")
    expect(page.locator("#cascade-summary")).to_contain_text("3 API keys, 2 grants and 1 live session")
    shoot(page, "12-suspend-confirmation")
    assert validate_over_rest(live_server, validator_key, keys[1].secret)["valid"] is True

    page.fill("#id_reason", "credentials seen on a paste site")
    page.click("input[value='Yes, suspend']")
    expect(page.locator(".messagelist")).to_contain_text(f"{chitty_id} is now suspended")
    shoot(page, "13-identity-suspended")

    for issued in keys:
        answer = validate_over_rest(live_server, validator_key, issued.secret)
        assert (answer["valid"], answer["code"]) == (False, "IDENTITY_SUSPENDED")
    page.click(".object-tools a:text-is('Sessions')")
    expect(page.locator("#result_list")).to_contain_text("credentials seen on a paste site")
    shoot(page, "14-sessions-ended")
    page.goto(f"/admin/auth_sessions/authsession/?principal={chitty_id}&state=live")
    expect(page.locator("#result_list")).to_have_count(0)


def test_repeated_wrong_passwords_lock_the_login(page, staff_account, settings):
    limit = settings.AXES_FAILURE_LIMIT
    for attempt in range(1, limit):
        log_in(page, password=f"wrong-password-{attempt}")
        expect(page.locator(".errornote")).to_contain_text("correct username and password")
    shoot(page, "15-login-failed")

    log_in(page, password=f"wrong-password-{limit}")
    expect(page.locator("h1")).to_have_text("Sign-in locked")
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        log_in(page)  # the right password no longer helps
    assert answer.value.status == 429
    expect(page.locator(".locked-out")).to_contain_text(
        f"after {limit} failures for one account or from one address"
    )
    shoot(page, "16-locked-out")
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/"))

    trail = in_database(lambda: list(AuditEvent.objects.order_by("sequence").values()))
    failures = [e for e in trail if e["action"] == "staff.login_failed"]
    assert len(failures) == limit + 1
    assert {e["target"] for e in failures} == {f"staff:{ADMIN_USERNAME}"}
    assert any(e["action"] == "staff.lockout" and e["outcome"] == "denied" for e in trail)
    assert not any(e["action"] == "staff.login" for e in trail)
    assert "wrong-password" not in str(trail)
    assert ADMIN_PASSWORD not in str(trail)


def test_ending_every_session_of_a_principal_asks_first_in_the_browser(
    page, live_server, staff_account, validator_key
):
    chitty_id = "CHITTY-PEO-ROAMING-1"

    def principal_with_a_key() -> str:
        Identity.objects.create(chitty_id=chitty_id, entity_type="PEO")
        grant_permission(SYSTEM, grantee_chitty_id=chitty_id, permission="documents:*")
        return generate_api_key(SYSTEM, chitty_id=chitty_id, scopes=["documents:read"]).secret

    secret = in_database(principal_with_a_key)
    whoami = httpx.get(
        f"{live_server.url}/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"}, timeout=10
    )
    session_id = whoami.json()["session_id"]

    log_in(page)
    page.goto(f"/admin/auth_sessions/authsession/?principal={chitty_id}&state=live")
    page.check("#result_list input.action-select")
    page.select_option("select[name=action]", "end_all_of_principals")
    page.click("button[name=index]")
    expect(page.locator(".confirm-action-page .errornote")).to_contain_text("ends every live session")
    expect(page.locator(".confirm-action-items")).to_contain_text(f"{chitty_id}: 1 live sessions")
    shoot(page, "15-end-all-confirmation")
    page.goto(f"/admin/auth_sessions/authsession/?principal={chitty_id}&state=live")
    expect(page.locator("#result_list")).to_contain_text(session_id)  # nothing ended without confirming

    page.check("#result_list input.action-select")
    page.select_option("select[name=action]", "end_all_of_principals")
    page.click("button[name=index]")
    page.click("input[value='Yes, end every session']")
    expect(page.locator(".messagelist")).to_contain_text("ended")
    shoot(page, "16-all-sessions-ended")
    page.goto(f"/admin/auth_sessions/authsession/?principal={chitty_id}&state=live")
    expect(page.locator("#result_list")).to_have_count(0)
