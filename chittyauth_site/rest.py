"""Small pieces every REST adapter shares."""

from rest_framework.serializers import Serializer


def validated(serializer_class: type[Serializer], data) -> dict:
    """Shape-check request input; business rules stay in the services."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
