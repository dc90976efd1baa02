"""One JSON object per log line (``BACKSTOP_LOG_FORMAT=json``): time, level, logger,
message, and the run, trace and decision ids when the record carries them (passed as
``extra=``, or else read from the message's ``run=wf_...`` and ``trace=trc_...``), for log
pipelines that index fields instead of parsing text."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

# The ``extra=`` fields copied into the object when a record has them.
CONTEXT_FIELDS = ("run_id", "trace_id", "decision_id", "step_id", "org_id")
# The ids older log calls put in their text only.
IN_MESSAGE = {"run_id": re.compile(r"\brun=(wf_\w+)"), "trace_id": re.compile(r"\btrace=(trc_\w+)")}


class JsonFormatter(logging.Formatter):
    """Format a record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        for field, pattern in IN_MESSAGE.items():
            if field not in entry and (found := pattern.search(str(entry["message"]))):
                entry[field] = found.group(1)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)
