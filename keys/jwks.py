"""The public JWK Set at `/.well-known/jwks.json`: anonymous by design, it holds only public keys."""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_safe

from keys.signing_keys import jwks_document

# Short, so relying parties see a newly rotated key soon; retired keys stay published far longer than this.
JWKS_MAX_AGE_SECONDS = 300


@require_safe
def jwks_view(request: HttpRequest) -> JsonResponse:
    response = JsonResponse(jwks_document())
    response["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE_SECONDS}"
    return response
