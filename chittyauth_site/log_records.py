"""Log lines as operators read them: plain text or one JSON object per line (`LOG_FORMAT`), each carrying the
request it belongs to (request id, principal, credential id) and never a secret: API keys and JWTs are masked in
the finished line (message, extra fields, a traceback) the same way the audit trail masks them, a request is
logged as its method and path (a query string may carry any secret), and a text line's message cannot break
into two lines (a decoded path may hold a newline, which would forge a second line)."""

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from kernel import request_context
from kernel.masking import mask_secret_string


class RequestContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        context = request_context.current()
        record.request_id, record.principal = context.request_id, context.principal
        record.credential_id = context.credential_id
        request = getattr(record, "request", None)
        if request is not None and hasattr(request, "path"):
            record.request = f"{getattr(request, 'method', '')} {request.path}"
        return True


class TextLogFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = record.message.replace("\r", "\\r").replace("\n", "\\n")
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        return mask_secret_string(super().format(record))


class ConsoleHandler(logging.StreamHandler):
    """A log call that itself fails (a bad format string) is reported without its arguments, which the
    standard handler prints as they are."""

    def handleError(self, record: logging.LogRecord) -> None:
        sys.stderr.write(
            f"--- Logging error in {record.name} at {record.pathname}:{record.lineno} (arguments withheld)\n"
        )


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
