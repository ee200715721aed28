"""Log records that travel from where a job runs (a worker process, a Ray actor) to the app's log: the message
formatted, the traceback folded into it, and the worker's name on the logger (``i2v.engine@gpu0``), so the record
pickles and the app's handlers write it as if it were its own, with the job id it carries."""
from __future__ import annotations

import logging

_FORMATTER = logging.Formatter()


def portable(record: logging.LogRecord, worker: str) -> logging.LogRecord:
    """The record made safe to pickle (no arguments or exception objects), named after ``worker``. Changes it in
    place: it is one the relaying handler received, which no other handler sees after it."""
    record.msg = record.getMessage()
    record.args = None
    if record.exc_info:
        record.exc_text = _FORMATTER.formatException(record.exc_info)
        record.msg = f"{record.msg}\n{record.exc_text}"
    record.exc_info = record.exc_text = None
    record.name = f"{record.name}@{worker}"
    return record


def write_to_app_log(record: logging.LogRecord) -> None:
    """On the app's side: hand the relayed record to the app's loggers (its handlers add nothing it already has)."""
    logging.getLogger(record.name).handle(record)
