from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from audit import api as audit_api
from chittyauth_site import health
from chittyauth_site.metrics import MetricsView
from grants import api as grants_api
from identities import api as identities_api
from keys import api as keys_api
from keys.jwks import jwks_view
from sessions import api as sessions_api

api_v1 = [
    path("whoami", identities_api.WhoAmIView.as_view(), name="whoami"),
    path("identities", identities_api.IdentityListView.as_view(), name="identities"),
    path("identities/<str:chitty_id>", identities_api.IdentityDetailView.as_view(), name="identity"),
    path(
        "identities/<str:chitty_id>/suspend",
        identities_api.SuspendIdentityView.as_view(),
        name="identity-suspend",
    ),
    path(
        "identities/<str:chitty_id>/reactivate",
        identities_api.ReactivateIdentityView.as_view(),
        name="identity-reactivate",
    ),
    path("keys", keys_api.ApiKeyListView.as_view(), name="keys"),
    path("keys/validate", keys_api.ApiKeyValidateView.as_view(), name="key-validate"),
    path("keys/<str:key_id>", keys_api.ApiKeyDetailView.as_view(), name="key"),
    path("keys/<str:key_id>/usage", keys_api.ApiKeyUsageView.as_view(), name="key-usage"),
    path("keys/<str:key_id>/revoke", keys_api.ApiKeyRevokeView.as_view(), name="key-revoke"),
    path("keys/<str:key_id>/rotate", keys_api.ApiKeyRotateView.as_view(), name="key-rotate"),
    path("tokens", keys_api.TokenGenerateView.as_view(), name="tokens"),
    path("tokens/validate", keys_api.TokenValidateView.as_view(), name="token-validate"),
    path("tokens/revoke", keys_api.TokenRevokeView.as_view(), name="token-revoke"),
    path("grants", grants_api.GrantListView.as_view(), name="grants"),
    path("grants/<int:grant_id>/revoke", grants_api.GrantRevokeView.as_view(), name="grant-revoke"),
    path("sessions", sessions_api.SessionListView.as_view(), name="sessions"),
    path("sessions/end-all", sessions_api.SessionEndAllView.as_view(), name="sessions-end-all"),
    path("sessions/<str:session_id>/end", sessions_api.SessionEndView.as_view(), name="session-end"),
    path("audit/events", audit_api.AuditEventListView.as_view(), name="audit-events"),
    path("audit/checkpoints", audit_api.AuditCheckpointListView.as_view(), name="audit-checkpoints"),
    path("permissions/check", grants_api.PermissionCheckView.as_view(), name="permission-check"),
]

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path(".well-known/jwks.json", jwks_view, name="jwks"),
    path("metrics", MetricsView.as_view(), name="metrics"),
    path("", include("oauth.urls")),
    path("api/v1/", include(api_v1)),
    path(
        "api/schema/",
        SpectacularAPIView.as_view(permission_classes=[], authentication_classes=[]),
        name="schema",
    ),
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="schema", permission_classes=[], authentication_classes=[]
        ),
        name="api-docs",
    ),
    path("admin/", admin.site.urls),
]

handler404 = "kernel.errors.json_not_found"
handler500 = "kernel.errors.json_server_error"
