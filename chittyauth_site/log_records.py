"""Log lines as operators read them: plain text or one JSON object per line (`LOG_FORMAT`), each carrying the
request it belongs to (request id, principal, credential id) and never a secret: API keys and JWTs are masked in
the message and its arguments the same way the audit trail masks them."""

import logging

from pythonjsonlogger.json import JsonFormatter

from audit.masking import mask_secret_string
from kernel import request_context


class RequestContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        context = request_context.current()
        record.request_id, record.principal = context.request_id, context.principal
        record.credential_id = context.credential_id
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken log call: let the handler report it as logging does
            return True
        record.msg, record.args = mask_secret_string(message), None
        return True


class JsonLogFormatter(JsonFormatter):
    """`timestamp level logger message request_id principal credential_id`, plus a masked traceback."""

    def __init__(self, **kwargs) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(principal)s %(credential_id)s",
            rename_fields={"asctime": "timestamp", "levelname": "level", "name": "logger"},
            **kwargs,
        )

    def formatException(self, ei) -> str:
        return mask_secret_string(super().formatException(ei))
