"""One permission layer for staff: what a staff login may see and do in the console comes from the grants of
the identity it is linked to (Staff links), never from Django's model permissions or groups.

Superusers are exempt, as everywhere (Django answers yes for them before asking any backend). For every other
staff user this backend answers Django's `has_perm("keys.change_apikey")` from the linked identity's grants,
through the table below; a model that is not in it (users, groups, staff links, schedules, the OAuth toolkit's
and axes' records) is for superusers only. An unlinked, suspended or revoked identity holds nothing. The
services check the same grants again on every change; this layer decides what the console shows.
"""

from django.contrib.auth.backends import ModelBackend

from grants.checks import caller_may
from identities.staff_links import linked_identity
from kernel.callers import Caller

# Django model permission → the grants that give it (any one of them).
GRANTS_FOR_MODEL_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "audit.view_auditevent": ("audit:read",),
    "audit.view_auditdelivery": ("audit:read",),
    "audit.view_auditdeadletter": ("audit:read",),
    "audit.change_auditdeadletter": ("audit:export",),
    "identities.view_identity": ("identities:read",),
    "identities.add_identity": ("identities:manage",),
    "identities.change_identity": ("identities:manage",),
    "keys.view_apikey": ("api_keys:manage",),
    "keys.add_apikey": ("api_keys:generate", "api_keys:manage"),
    "keys.change_apikey": ("api_keys:manage",),
    "keys.view_revokedtoken": ("tokens:manage",),
    "keys.view_signingkey": ("tokens:manage", "signing_keys:rotate"),
    "keys.change_signingkey": ("signing_keys:rotate",),
    "grants.view_grant": ("permissions:check", "authorizations:revoke"),
    "grants.add_grant": ("authorizations:grant",),
    "grants.change_grant": ("authorizations:revoke",),
    "auth_sessions.view_authsession": ("sessions:read",),
    "auth_sessions.change_authsession": ("sessions:revoke",),
    "jobs.view_jobrun": ("jobs:run",),
    "oauth.view_client": ("oauth_clients:manage",),
    "oauth.add_client": ("oauth_clients:manage",),
    "oauth.change_client": ("oauth_clients:manage",),
}

_CACHE_ATTRIBUTE = "_chittyauth_grant_permissions"


class GrantsBackend(ModelBackend):
    """Django's password authentication; permissions from grants only (the user and group permission tables
    are never read)."""

    def get_user_permissions(self, user_obj, obj=None) -> set[str]:
        return set()

    def get_group_permissions(self, user_obj, obj=None) -> set[str]:
        return set()

    def get_all_permissions(self, user_obj, obj=None) -> set[str]:
        """Worked out once per request's user object: an admin page asks for many."""
        if not user_obj.is_active or user_obj.is_anonymous or not user_obj.is_staff or obj is not None:
            return set()
        if not hasattr(user_obj, _CACHE_ATTRIBUTE):
            setattr(user_obj, _CACHE_ATTRIBUTE, model_permissions_from_grants(user_obj))
        return getattr(user_obj, _CACHE_ATTRIBUTE)

    def has_perm(self, user_obj, perm: str, obj=None) -> bool:
        return perm in self.get_all_permissions(user_obj, obj)

    def has_module_perms(self, user_obj, app_label: str) -> bool:
        return any(perm.partition(".")[0] == app_label for perm in self.get_all_permissions(user_obj))


def model_permissions_from_grants(user) -> set[str]:
    """The Django model permissions a (non-superuser) staff user's linked identity's grants give."""
    identity = linked_identity(user)
    if identity is None:
        return set()
    caller = Caller.staff(user, identity=identity)
    wanted = {grant for grants in GRANTS_FOR_MODEL_PERMISSIONS.values() for grant in grants}
    held = {grant for grant in wanted if caller_may(caller, grant)}
    return {
        model_permission
        for model_permission, grants in GRANTS_FOR_MODEL_PERMISSIONS.items()
        if held.intersection(grants)
    }
