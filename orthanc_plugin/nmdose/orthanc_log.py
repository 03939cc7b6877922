"""The `nmdose` loggers into Orthanc's own log, for the two `PythonScript` entry files. The `orthanc` module is
handed in: nothing in the package imports it (tests/unit/test_layers.py)."""

from __future__ import annotations

import logging
from typing import Any


class OrthancLogHandler(logging.Handler):
    def __init__(self, orthanc: Any):
        super().__init__()
        self.orthanc = orthanc

    def emit(self, record: logging.LogRecord) -> None:
        msg = self.format(record)
        if record.levelno >= logging.ERROR:
            self.orthanc.LogError(msg)
        elif record.levelno >= logging.WARNING:
            self.orthanc.LogWarning(msg)
        else:
            self.orthanc.LogInfo(msg)


def log_into_orthanc(orthanc: Any) -> None:
    """Send what the `nmdose` loggers say at INFO and above to Orthanc's log."""
    handler = OrthancLogHandler(orthanc)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logger = logging.getLogger("nmdose")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
