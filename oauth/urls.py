"""The OAuth endpoints, in django-oauth-toolkit's URL namespace (its views reverse these names). The RFC 8414
metadata sits at the root, where clients look for it; the RFC 9728 resource metadata belongs to the resource
(`mcp_endpoint`), so it is not routed here."""

from django.urls import path

from oauth import views

app_name = "oauth2_provider"

urlpatterns = [
    path(
        ".well-known/oauth-authorization-server",
        views.ServerMetadataView.as_view(),
        name="oauth-server-metadata",
    ),
    path("o/authorize/", views.ConsentView.as_view(), name="authorize"),
    path("o/token/", views.TokenView.as_view(), name="token"),
    path("o/revoke/", views.RevokeView.as_view(), name="revoke-token"),
    path("o/introspect/", views.IntrospectView.as_view(), name="introspect"),
    path("o/register/", views.RegistrationView.as_view(), name="dcr-register"),
    path(
        "o/register/<str:client_id>/",
        views.RegistrationManagementView.as_view(),
        name="dcr-register-management",
    ),
]
