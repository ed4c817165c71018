"""Reading identities, shared by every app's services."""

from chittyauth_site.errors import NotFound
from identities.chitty_ids import parse_chitty_id
from identities.models import Identity


def get_identity(chitty_id: str) -> Identity:
    """The registered identity, or `INVALID_CHITTY_ID` / `IDENTITY_NOT_FOUND`."""
    parse_chitty_id(chitty_id)
    try:
        return Identity.objects.get(chitty_id=chitty_id)
    except Identity.DoesNotExist:
        raise NotFound(f"No identity {chitty_id} is registered", code="IDENTITY_NOT_FOUND") from None
