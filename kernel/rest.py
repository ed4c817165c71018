"""Small pieces every REST adapter shares."""

from typing import Any, ClassVar

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
