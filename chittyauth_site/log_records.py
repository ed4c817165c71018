"""Log lines as operators read them: plain text or one JSON object per line (`LOG_FORMAT`), each carrying the
request it belongs to (request id, principal, credential id) and never a secret: API keys and JWTs are masked in
the finished line (message, extra fields, a request's path and query, a traceback) the same way the audit trail
masks them."""

import logging

from pythonjsonlogger.json import JsonFormatter

from audit.masking import mask_secret_string
from kernel import request_context


class RequestContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        context = request_context.current()
        record.request_id, record.principal = context.request_id, context.principal
        record.credential_id = context.credential_id
        return True


class TextLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_secret_string(super().format(record))


class JsonLogFormatter(JsonFormatter):
    """`timestamp level logger message request_id principal credential_id`, plus any extra fields."""

    def __init__(self, **kwargs) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(principal)s %(credential_id)s",
            rename_fields={"asctime": "timestamp", "levelname": "level", "name": "logger"},
            **kwargs,
        )

    def jsonify_log_record(self, log_data) -> str:
        return mask_secret_string(super().jsonify_log_record(log_data))
