"""The session tools, and `whoami`: who this connection is."""

from identities.serializers import IdentitySerializer
from kernel.callers import Caller
from mcp_endpoint.tools.results import MAX_LISTED, ToolOutcome, plain, scope_text, text_lines
from sessions import services as session_services
from sessions.serializers import SessionSerializer


def list_sessions(caller: Caller, arguments: dict) -> ToolOutcome:
    active_only = arguments.get("active_only", True)
    sessions = session_services.list_sessions(
        caller, chitty_id=arguments.get("chitty_id"), active=True if active_only else None
    )
    rows = plain(SessionSerializer(sessions[:MAX_LISTED], many=True).data)
    heading = f"📋 {'Active Sessions' if active_only else 'Sessions'} ({len(rows)})"
    if not rows:
        return ToolOutcome(text_lines(heading, "No sessions."), {"sessions": rows, "count": 0})
    lines = [
        f"• {row['session_id']} {row['chitty_id']} on {row['channel']} via {row['credential_id']}, "
        f"since {row['started_at']}" + ("" if row["live"] else f", ended {row['ended_at']}")
        for row in rows
    ]
    return ToolOutcome(text_lines(heading, *lines), {"sessions": rows, "count": len(rows)})


def revoke_session(caller: Caller, arguments: dict) -> ToolOutcome:
    session = session_services.end_session(
        caller, arguments["session_id"], reason=arguments.get("reason", "")
    )
    data = plain(SessionSerializer(session).data)
    return ToolOutcome(
        text_lines(
            "✅ Session Ended",
            f"Session: {data['session_id']}",
            f"ChittyID: {data['chitty_id']}",
            f"Reason: {data['end_reason']}",
        ),
        data,
    )


def whoami(caller: Caller, arguments: dict) -> ToolOutcome:
    data = {
        "chitty_id": caller.chitty_id,
        "credential_type": caller.credential_type,
        "credential_id": caller.credential_id,
        "scopes": list(caller.scopes),
        "session_id": caller.session_id,
        "identity": plain(IdentitySerializer(caller.identity).data),
    }
    return ToolOutcome(
        text_lines(
            f"👤 {caller.chitty_id}",
            f"Credential: {caller.credential_type} {caller.credential_id}",
            f"Scopes: {scope_text(data['scopes'])}",
            f"Session: {caller.session_id}",
        ),
        data,
    )
