"""Log configuration: one line per event, as text or as JSON."""

from __future__ import annotations

import json
import logging
import sys
import time

from exporter.azdo.scrub import ScrubFilter


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            text = record.exc_text or self.formatException(record.exc_info)  # exc_text: scrubbed by ScrubFilter
            entry["exception"] = text.replace("\n", " | ")
        return json.dumps(entry, ensure_ascii=False)


class _OneLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", " | ")


def setup_logging(level: str = "INFO", log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(ScrubFilter())  # every record, from any library, loses the configured secrets
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # urllib3 logs every retry and connection at DEBUG with URLs; keep it quiet unless asked.
    logging.getLogger("urllib3").setLevel(logging.WARNING if level.upper() != "DEBUG" else logging.INFO)
