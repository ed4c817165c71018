"""The permission tools: check (one or many), grant, revoke."""

from grants import services as grant_services
from grants.serializers import GrantSerializer, bulk_outcome_as_dict, decision_as_dict
from kernel.callers import Caller
from mcp_endpoint.tools.results import (
    ToolOutcome,
    or_never,
    parse_timestamp,
    plain,
    text_lines,
)


def check_permission(caller: Caller, arguments: dict) -> ToolOutcome:
    chitty_id, resource = arguments["chitty_id"], arguments.get("resource", "")
    decision = grant_services.check_principal_permission(caller, chitty_id, arguments["permission"], resource)
    data = decision_as_dict(chitty_id, decision)
    subject = [f"ChittyID: {chitty_id}", f"Permission: {data['permission']}"]
    if data["resource"]:
        subject.append(f"Resource: {data['resource']}")
    if data["allowed"]:
        granted_by = f"Grant: {data['grant_id']} ({data['granted_permission']})"
        return ToolOutcome(text_lines("✅ Permission Granted", *subject, granted_by), data)
    return ToolOutcome(text_lines("❌ Permission Denied", *subject, f"Reason: {data['reason']}"), data)


def check_permissions(caller: Caller, arguments: dict) -> ToolOutcome:
    queries = [
        grant_services.PermissionQuery(check["chitty_id"], check["permission"], check.get("resource", ""))
        for check in arguments["checks"]
    ]
    data = bulk_outcome_as_dict(grant_services.check_principal_permissions(caller, queries))
    allowed = sum(result["allowed"] for result in data["results"])
    title = f"🔍 Permission Checks: {allowed} of {len(data['results'])} allowed"
    return ToolOutcome(text_lines(title, *map(_check_line, data["results"])), data)


def _check_line(result: dict) -> str:
    subject = f"{result['chitty_id']} {result['permission']}"
    if result["resource"]:
        subject += f" on {result['resource']}"
    if result["allowed"]:
        return f"✅ {subject}"
    return f"❌ {subject}: {result['error']['code'] if result['error'] else result['reason']}"


def grant_authorization(caller: Caller, arguments: dict) -> ToolOutcome:
    grant = grant_services.grant_permission(
        caller,
        grantee_chitty_id=arguments["grantee_chitty_id"],
        permission=arguments["permission"],
        resource_id=arguments.get("resource", ""),
        expires_at=parse_timestamp(arguments.get("expires_at"), "expires_at"),
        grantor_chitty_id=arguments.get("grantor_chitty_id"),
    )
    data = plain(GrantSerializer(grant).data)
    return ToolOutcome(
        text_lines(
            "✅ Authorization Granted",
            f"Grant ID: {data['id']}",
            f"ChittyID: {data['chitty_id']}",
            f"Permission: {data['permission']}",
            f"Resource: {data['resource'] or '(any)'}",
            f"Expires: {or_never(data['expires_at'])}",
        ),
        data,
    )


def revoke_authorization(caller: Caller, arguments: dict) -> ToolOutcome:
    data = plain(GrantSerializer(grant_services.revoke_grant(caller, arguments["grant_id"])).data)
    return ToolOutcome(
        text_lines(
            "✅ Authorization Revoked",
            f"Grant ID: {data['id']}",
            f"ChittyID: {data['chitty_id']}",
            f"Permission: {data['permission']}",
            f"Revoked: {data['revoked_at']}",
        ),
        data,
    )
