"""Per-stage log files under var/log/ (census.log, retrieve.log, …): one line per study, named by UID."""

from __future__ import annotations

import logging
from pathlib import Path

from nmdose.config import Config

_handlers: dict[str, logging.Handler] = {}


def attach_log_file(cfg: Config, filename: str, *loggers: logging.Logger) -> Path:
    """Send these loggers (at INFO and above) to var/log/<filename>, once per file and process."""
    path = cfg.log_dir / filename
    handler = _handlers.get(str(path))
    if handler is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        _handlers[str(path)] = handler
    for logger in loggers:
        if handler not in logger.handlers:
            logger.addHandler(handler)
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
    return path
