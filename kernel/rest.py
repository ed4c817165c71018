"""Small pieces every REST adapter shares."""

from typing import Any, ClassVar

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from kernel.callers import Caller


def validated(serializer_class: type[Serializer], data) -> dict:
    """Shape-check request input; business rules stay in the services."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def validated_query(serializer_class: type[Serializer], request: Request) -> dict:
    """Shape-check a query string. As a plain dict, not DRF's form semantics where `?chitty_id=` means "no
    filter": an empty value is refused unless the field allows blank, so a client that loses an id while
    building a URL gets a 400, not everybody's records."""
    return validated(serializer_class, request.query_params.dict())


class AnswerView(APIView):
    """A POST whose whole job is `answer(caller, validated input)`: one read-only service call.

    Spelled this way so the REST fast path (`keys.fast_path`) can call the very same
    `answer` for a warm request without Django's request machinery.
    """

    input_serializer: ClassVar[type[Serializer]]

    @classmethod
    def input_serializer_for(cls, data: Any) -> type[Serializer]:
        """The serializer for this body: one, unless a view takes more than one shape."""
        return cls.input_serializer

    @staticmethod
    def answer(caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def post(self, request: Request) -> Response:
        data = validated(self.input_serializer_for(request.data), request.data)
        return Response(self.answer(request.auth, data))


class StrictCharField(serializers.CharField):
    """A string and nothing else. DRF's CharField turns a number or a boolean into its text, which the schema
    (`type: string`) says is refused; and a string that may not be blank is documented with `minLength: 1`."""

    def __init__(self, **kwargs: Any) -> None:
        if not kwargs.get("allow_blank", False):
            kwargs.setdefault("min_length", 1)
        super().__init__(**kwargs)

    def run_validation(self, data: Any = empty) -> Any:
        # Checked before DRF trims whitespace: the limits the schema documents apply to what was sent.
        if data is not empty and data is not None:
            if not isinstance(data, str):
                self.fail("invalid")
            if self.max_length is not None and len(data) > self.max_length:
                self.fail("max_length", max_length=self.max_length)
        return super().run_validation(data)


def listed(name: str, field: str, item: type[Serializer]) -> Serializer:
    """The schema of a list answer as it is sent: an object holding the list under `field`."""
    return inline_serializer(name, {field: item(many=True)})
