"""Audit export through the Celery task beat runs (`jobs.deliver_audit_events`), to real loopback receivers: a
webhook verified with the Standard Webhooks library, and a syslog collector over TCP and TLS."""

import base64
import datetime as dt
import ipaddress
import json
import re
import ssl
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from standardwebhooks import Webhook

from audit.export import DEAD_LETTERED_ACTION, retry_delay
from audit.models import AuditDeadLetter, AuditDelivery, AuditEvent
from audit.selectors import export_pending_by_sink
from audit.services import record
from chittyauth_site.configuration import check_webhook_sink
from jobs.tasks import deliver_audit_events
from kernel.callers import Caller
from keys.checkpoints import sign_checkpoint
from tests.audit_sink_servers import SyslogCollector, WebhookReceiver
from tests.conftest import free_port
from tests.secret_scan import TEST_INPUTS_MARKER
from tests.test_admin_credentials import log_in

SECRET = "whsec_" + base64.b64encode(b"a test secret of thirty-two byte").decode()
RFC5424 = re.compile(
    r"<(?P<pri>\d+)>1 (?P<time>\S+Z) (?P<host>\S+) chittyauth - (?P<msgid>\S+) - \ufeff(?P<msg>\{.*\})\Z",
    re.S,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def webhook(settings):
    def configure(receiver: WebhookReceiver, *, retry_seconds: float = 0) -> WebhookReceiver:
        settings.AUDIT_WEBHOOK_URL = receiver.url
        settings.AUDIT_WEBHOOK_SECRET = SECRET
        settings.AUDIT_EXPORT_RETRY_SECONDS = retry_seconds
        return receiver

    return configure


def run_export() -> list[dict]:
    result = deliver_audit_events.apply()
    assert result.successful(), result.traceback
    return result.result


def export_until_caught_up(runs: int = 30) -> list[list[dict]]:
    history = []
    for _ in range(runs):
        history.append(run_export())
        if all(run["state"] == "caught_up" for run in history[-1]):
            return history
    raise AssertionError(f"not caught up after {runs} runs: {history[-3:]}")


def record_events(count: int, outcome: str = AuditEvent.Outcome.SUCCESS) -> list[AuditEvent]:
    return [
        record("test.exported", actor="tests", target=f"thing-{n}", outcome=outcome) for n in range(count)
    ]


def all_sequences() -> list[str]:
    return [
        str(sequence)
        for sequence in AuditEvent.objects.order_by("sequence").values_list("sequence", flat=True)
    ]


def event_ids(cloudevents: list[dict]) -> list[str]:
    return [cloudevent["id"] for cloudevent in cloudevents]


def test_with_no_sink_configured_a_run_does_nothing_at_all(django_assert_num_queries):
    record_events(2)
    with django_assert_num_queries(0):
        assert run_export() == []


def test_a_webhook_that_fails_at_first_gets_every_event_in_order_signed(webhook, settings):
    settings.AUDIT_EXPORT_BATCH_SIZE = 10
    record_events(24)
    with webhook(WebhookReceiver(fail_first=3)) as receiver:
        history = export_until_caught_up()

    assert [run["state"] for runs in history[:3] for run in runs] == ["failed"] * 3
    assert event_ids(receiver.accepted) == all_sequences()
    # The same items in the same order carry the same webhook-id (the receiver's idempotency key); others do not.
    ids = [request.headers["webhook-id"] for request in receiver.requests]
    assert len(set(ids[:4])) == 1 and len(set(ids[3:])) == len(ids[3:]) == 3
    verifier = Webhook(SECRET)
    for request in receiver.requests:
        assert request.headers["content-type"] == "application/cloudevents-batch+json"
        assert verifier.verify(request.body, request.headers) == request.cloudevents
        assert len(request.cloudevents) <= 10
    first = receiver.accepted[0]
    assert first["specversion"] == "1.0" and first["type"] == "os.chitty.auth.audit.test.exported"
    assert first["source"] == f"{settings.CHITTYAUTH_BASE_URL}/api/v1/audit/events"
    assert first["subject"] == "thing-0" and first["sequence"] == "1"
    # Each event carries both hashes, so the receiver can follow the chain link by link.
    for previous, current in zip(receiver.accepted, receiver.accepted[1:], strict=False):
        assert current["data"]["prev_hash"] == previous["data"]["hash"]
    delivery = AuditDelivery.objects.get(sink="webhook")
    assert (delivery.delivered_sequence, delivery.failures_in_a_row, delivery.last_error) == (24, 0, "")
    assert export_pending_by_sink(["webhook"]) == {"webhook": 0}


def test_a_tampered_signature_is_caught_by_the_receivers_library(webhook):
    record_events(1)
    with webhook(WebhookReceiver()) as receiver:
        export_until_caught_up()
    request = receiver.requests[0]
    Webhook(SECRET).verify(request.body, request.headers)
    forged = request.body.replace(b'"outcome":"success"', b'"outcome":"denied"')
    assert forged != request.body
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(SECRET).verify(forged, request.headers)


def test_a_webhook_down_for_the_whole_run_loses_nothing_once_it_is_back(webhook, settings, caplog):
    record_events(5)
    port = free_port()
    settings.AUDIT_WEBHOOK_URL = f"http://hook-user:hook-password@127.0.0.1:{port}/audit-hook"
    settings.AUDIT_WEBHOOK_SECRET, settings.AUDIT_EXPORT_RETRY_SECONDS = SECRET, 0

    for _ in range(3):
        (run,) = run_export()
        assert (run["state"], run["delivered"], run["error"]) == ("failed", 0, "ConnectError")
    delivery = AuditDelivery.objects.get(sink="webhook")
    assert (delivery.delivered_sequence, delivery.failures_in_a_row) == (0, 3)
    assert export_pending_by_sink(["webhook", "syslog"]) == {"webhook": 5, "syslog": 5}
    assert "hook-password" not in caplog.text and "hook-password" not in delivery.last_error

    record_events(2)  # recorded while the receiver is down
    with WebhookReceiver(port) as receiver:
        export_until_caught_up()
    assert event_ids(receiver.accepted) == all_sequences()
    assert receiver.requests[0].headers["authorization"].startswith("Basic ")
    assert "hook-password" not in caplog.text
    assert AuditDelivery.objects.get(sink="webhook").failures_in_a_row == 0


def test_after_a_failure_the_sink_waits_before_it_is_tried_again(webhook):
    record_events(3)
    with webhook(WebhookReceiver(fail_first=1), retry_seconds=60) as receiver:
        (failed,) = run_export()
        (waiting,) = run_export()
    assert (failed["state"], waiting["state"]) == ("failed", "skipped")
    assert len(receiver.requests) == 1
    delivery = AuditDelivery.objects.get(sink="webhook")
    wait = (delivery.next_attempt_at - dt.datetime.now(dt.UTC)).total_seconds()
    assert 25 < wait <= 60 and delivery.last_error == "HTTP 503"


@pytest.mark.parametrize("status", [401, 403, 404, 429])
def test_a_receiver_that_refuses_our_credentials_or_url_is_retried_never_dead_lettered(webhook, status):
    record_events(3)
    with webhook(WebhookReceiver(fail_first=2, failure_status=status)) as receiver:
        history = export_until_caught_up()
    assert [run["error"] for runs in history[:2] for run in runs] == [f"HTTP {status}"] * 2
    assert not AuditDeadLetter.objects.exists()
    assert event_ids(receiver.accepted) == all_sequences()


def test_the_retry_delay_doubles_with_jitter_up_to_its_cap(settings):
    settings.AUDIT_EXPORT_RETRY_SECONDS, settings.AUDIT_EXPORT_RETRY_MAX_SECONDS = 5, 600
    for failures, ceiling in ((1, 5), (2, 10), (3, 20), (8, 600), (60, 600)):
        delays = {retry_delay(failures) for _ in range(50)}
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(delays) > 1


def test_an_event_refused_for_good_is_dead_lettered_and_sent_again_by_staff(webhook, settings):
    settings.AUDIT_EXPORT_BATCH_SIZE = 10
    record_events(12)
    receiver = webhook(WebhookReceiver())
    receiver.refuse_ids = {"5"}
    with receiver:
        export_until_caught_up()
        letter = AuditDeadLetter.objects.get()
        assert (letter.sink, letter.event.sequence, letter.reason) == ("webhook", 5, "HTTP 422")
        assert [cloudevent for cloudevent in event_ids(receiver.accepted) if cloudevent == "5"] == []
        assert event_ids(receiver.accepted) == [sequence for sequence in all_sequences() if sequence != "5"]
        dead_lettered = AuditEvent.objects.get(action=DEAD_LETTERED_ACTION)
        assert dead_lettered.outcome == "failure" and dead_lettered.details["cloudevent_id"] == "5"

        User.objects.create_superuser("root", "root@example.org", "a-long-admin-password")
        staff = log_in("root", "a-long-admin-password")
        listing = staff.get("/admin/audit/auditdeadletter/")
        assert listing.status_code == 200 and "event #5 refused by webhook" in listing.content.decode()
        assert staff.get("/admin/audit/auditdelivery/").status_code == 200
        receiver.refuse_ids.clear()
        staff.post(
            "/admin/audit/auditdeadletter/", {"action": "send_again", "_selected_action": [str(letter.pk)]}
        )
        (run,) = run_export()

    assert run["redelivered"] == 1 and not AuditDeadLetter.objects.exists()
    assert event_ids(receiver.accepted).count("5") == 1
    action = AuditEvent.objects.filter(action="admin.action").latest("sequence")
    assert action.actor == "staff:root" and action.outcome == "success"


def test_checkpoints_follow_the_events_they_sign(webhook):
    record_events(3)
    checkpoint = sign_checkpoint(Caller.system("tests"))
    record_events(2)
    with webhook(WebhookReceiver()) as receiver:
        export_until_caught_up()

    ids = event_ids(receiver.accepted)
    position = ids.index(f"checkpoint-{checkpoint.pk}")
    assert ids[position - 1] == str(checkpoint.sequence)
    assert [cloudevent for cloudevent in ids if cloudevent.startswith("checkpoint")] == [ids[position]]
    signed = receiver.accepted[position]
    assert signed["type"] == "os.chitty.auth.audit-checkpoint"
    assert signed["data"]["hash"] == receiver.accepted[position - 1]["data"]["hash"]
    assert signed["data"]["token"] == checkpoint.token


@pytest.mark.django_db(transaction=True)
# PostgreSQL only: on Django's in-memory shared-cache SQLite test database a second writer fails at once with
# "database table is locked" (SQLITE_LOCKED ignores the busy timeout), which a SQLite file never does.
@pytest.mark.postgres
def test_two_runs_at_once_never_both_send(webhook):
    record_events(4)
    receiver = webhook(WebhookReceiver())
    original = receiver._answer

    def slow_answer(body: bytes) -> int:
        time.sleep(1)
        return original(body)

    receiver._answer = slow_answer
    states = []
    with receiver:
        runs = [threading.Thread(target=lambda: states.extend(run_export())) for _ in range(2)]
        for thread in runs:
            thread.start()
        for thread in runs:
            thread.join()
    assert sorted(run["state"] for run in states) == ["caught_up", "skipped"]
    assert event_ids(receiver.accepted) == all_sequences()


def parsed_frames(collector: SyslogCollector) -> list[re.Match]:
    frames = [RFC5424.match(frame.decode()) for frame in collector.frames]
    assert all(frames), collector.frames
    return frames


def test_syslog_over_tcp_gets_rfc5424_messages_in_order(settings):
    record_events(3)
    record_events(1, outcome=AuditEvent.Outcome.DENIED)
    with SyslogCollector() as collector:
        settings.AUDIT_SYSLOG_URL = f"tcp://127.0.0.1:{collector.port}"
        export_until_caught_up()

    frames = parsed_frames(collector)
    assert [json.loads(frame["msg"])["id"] for frame in frames] == all_sequences()
    assert [int(frame["pri"]) for frame in frames] == [86, 86, 86, 84]  # authpriv: info, then warning
    assert {frame["msgid"] for frame in frames} == {"test.exported"}
    assert dt.datetime.fromisoformat(frames[0]["time"]) <= dt.datetime.now(dt.UTC)
    assert AuditDelivery.objects.get(sink="syslog").delivered_sequence == 4


def self_signed_certificate(tmp_path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "syslog test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path / "tls"
    folder.mkdir()
    (folder / TEST_INPUTS_MARKER).touch()  # the test server's own key, not something the service wrote
    certificate_path, key_path = folder / "syslog.pem", folder / "syslog.key"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(certificate_path), str(key_path)


def test_syslog_over_tls_checks_the_collectors_certificate(settings, tmp_path, monkeypatch):
    certificate, key = self_signed_certificate(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(certificate, key)
    record_events(3)
    with SyslogCollector(tls=server_context) as collector:
        settings.AUDIT_SYSLOG_URL = f"tls://127.0.0.1:{collector.port}"
        settings.AUDIT_EXPORT_RETRY_SECONDS = 0
        (untrusted,) = run_export()
        assert (untrusted["state"], untrusted["error"], collector.frames) == (
            "failed",
            "TLS certificate not trusted",
            [],
        )
        monkeypatch.setenv("SSL_CERT_FILE", certificate)
        export_until_caught_up()

    assert [json.loads(frame["msg"])["id"] for frame in parsed_frames(collector)] == all_sequences()


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_a_collector_that_drops_the_connection_has_not_received_the_batch(
    settings, tmp_path, monkeypatch, tls
):
    record_events(3)
    server_context = None
    if tls:
        certificate, key = self_signed_certificate(tmp_path)
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(certificate, key)
        monkeypatch.setenv("SSL_CERT_FILE", certificate)
    with SyslogCollector(tls=server_context, drop_after=10) as collector:
        settings.AUDIT_SYSLOG_URL = f"{'tls' if tls else 'tcp'}://127.0.0.1:{collector.port}"
        (run,) = run_export()
    assert (run["state"], run["delivered"]) == ("failed", 0)
    assert AuditDelivery.objects.get(sink="syslog").delivered_sequence == 0


def test_a_webhook_over_https_is_checked_against_the_trusted_cas(webhook, tmp_path, monkeypatch):
    certificate, key = self_signed_certificate(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(certificate, key)
    record_events(2)
    with webhook(WebhookReceiver(tls=server_context)) as receiver:
        assert receiver.url.startswith("https://")
        (untrusted,) = run_export()
        assert (untrusted["state"], untrusted["error"]) == ("failed", "ConnectError")
        monkeypatch.setenv("SSL_CERT_FILE", certificate)
        export_until_caught_up()
    assert event_ids(receiver.accepted) == all_sequences()


def test_a_receiver_that_refuses_everything_backs_off_and_sets_nothing_aside(webhook, settings):
    """A receiver that cannot check our signature may answer 400 to all: that must not empty the trail into
    dead letters (nor make the dead-letter events that would record it, without end)."""
    settings.AUDIT_EXPORT_BATCH_SIZE = 5
    record_events(8)
    receiver = webhook(WebhookReceiver())
    receiver.refuse_everything = True
    with receiver:
        runs = [run_export()[0] for _ in range(3)]
        assert [run["error"] for run in runs] == ["HTTP 400 for every item"] * 3
        assert not AuditDeadLetter.objects.exists() and AuditEvent.objects.count() == 8
        assert AuditDelivery.objects.get(sink="webhook").delivered_sequence == 0
        receiver.refuse_everything = False
        export_until_caught_up()
    assert event_ids(receiver.accepted) == all_sequences()


@pytest.mark.parametrize(
    ("url", "secret", "message"),
    [
        ("http://siem.example.org/hook", SECRET, "must be an https URL"),
        ("https://siem.example.org/hook", "", "needs AUDIT_WEBHOOK_SECRET"),
        ("https://siem.example.org/hook", "whsec_" + base64.b64encode(b"short").decode(), "at least 24"),
        ("https://siem.example.org/hook", "not-prefixed-" + SECRET, "must be whsec_"),
        ("", SECRET, "AUDIT_WEBHOOK_SECRET is set but AUDIT_WEBHOOK_URL is not"),
    ],
)
def test_a_webhook_sink_is_refused_at_start_unless_https_and_signed(url, secret, message):
    with pytest.raises(ImproperlyConfigured, match=message) as refused:
        check_webhook_sink("AUDIT_WEBHOOK_URL", url, "AUDIT_WEBHOOK_SECRET", secret)
    assert SECRET.removeprefix("whsec_") not in str(refused.value)


def test_a_webhook_sink_over_https_or_loopback_http_is_accepted():
    check_webhook_sink("AUDIT_WEBHOOK_URL", "https://siem.example.org/hook", "AUDIT_WEBHOOK_SECRET", SECRET)
    check_webhook_sink("AUDIT_WEBHOOK_URL", "http://127.0.0.1:9/hook", "AUDIT_WEBHOOK_SECRET", SECRET)
