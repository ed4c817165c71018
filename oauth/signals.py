"""Keeps ChittyAuth's revocations in step with django-oauth-toolkit, which revokes an access token by deleting
its row — from many places (RFC 7009, refresh rotation, reuse detection, the admin, cascades)."""

from django.db.models.signals import pre_delete
from oauth2_provider.models import get_access_token_model


def connect() -> None:
    pre_delete.connect(
        _access_token_deleted, sender=get_access_token_model(), dispatch_uid="chittyauth.oauth.access_token"
    )


def _access_token_deleted(sender, instance, **kwargs) -> None:
    from oauth.access_tokens import access_token_removed

    access_token_removed(instance)
