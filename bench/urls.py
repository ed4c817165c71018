"""The service's own routes plus two bench-only endpoints the REST benchmark compares against."""

from django.urls import path
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_api_key.permissions import HasAPIKey

from chittyauth_site import urls as service_urls


class NoOpView(APIView):
    """Our bearer authentication and the project's DRF settings, then nothing: the floor of a request."""

    permission_classes = [IsAuthenticated]

    def post(self, request: Request) -> Response:
        return Response({"ok": True})


class HasApiKeyView(APIView):
    """djangorestframework-api-key's way: `Authorization: Api-Key <key>` checked by `HasAPIKey`."""

    authentication_classes = []
    permission_classes = [HasAPIKey]

    def post(self, request: Request) -> Response:
        return Response({"ok": True})


urlpatterns = [
    path("bench/noop", NoOpView.as_view(), name="bench-noop"),
    path("bench/has-api-key", HasApiKeyView.as_view(), name="bench-has-api-key"),
    *service_urls.urlpatterns,
]

handler404 = service_urls.handler404
handler500 = service_urls.handler500
