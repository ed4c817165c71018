"""The text log format as LOGGING builds it: one line per message whatever the message holds, and no secret."""

import io
import logging

from django.conf import settings
from django.utils.module_loading import import_string

from kernel import request_context


def text_logger(stream: io.StringIO) -> logging.Logger:
    config = settings.LOGGING
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_text_formatter(config))
    filter_class = config["filters"]["request"]["()"]
    handler.addFilter(import_string(filter_class)())
    logger = logging.getLogger("tests.log_records")
    logger.handlers, logger.propagate = [handler], False
    return logger


def _text_formatter(config: dict) -> logging.Formatter:
    text = config["formatters"]["text"]
    return import_string(text["()"])(text["format"])


def test_a_decoded_newline_in_a_path_cannot_forge_a_second_line():
    stream = io.StringIO()
    text_logger(stream).warning(
        "Not Found: %s", "/x\n2026-12-07 INFO chittyauth.access [forged] POST /keys 200"
    )

    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert "\\n2026-12-07 INFO chittyauth.access [forged]" in lines[0]


def test_secrets_are_masked_in_the_message_and_the_traceback_and_the_request_id_is_named():
    stream = io.StringIO()
    logger = text_logger(stream)
    key = "chitty_live_" + "K" * 49
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    context = request_context.RequestContext(request_id="req-0123456789")
    reset = request_context._current.set(context)
    try:
        logger.warning("key %s token %s", key, token)
        try:
            raise ValueError(key)
        except ValueError:
            logger.exception("failed")
    finally:
        request_context._current.reset(reset)

    written = stream.getvalue()
    assert key not in written and token not in written
    assert "[req-0123456789] key chitty_live_KKKK" in written
