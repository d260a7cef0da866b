"""Logging through structlog, with phones, emails and secrets masked in every record.

Masking is a processor on the shared chain, so a careless ``log.info(phone)`` anywhere
(ours or a plugin's) still cannot write a full phone number or address to the log.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from hub.normalize.masking import mask_text

SECRET_KEYS = re.compile(r"(token|secret|password|authorization|api_key|sign|salt)", re.I)


PLAIN_KEYS = frozenset({"timestamp", "level", "logger", "event_id", "lead_id", "delivery_id"})


def _mask_value(key: str, value: Any) -> Any:
    if key in PLAIN_KEYS:
        return value
    if SECRET_KEYS.search(key):
        return "***"
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(key, v) for v in value]
    return value


def mask_processor(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        event[key] = _mask_value(key, event[key])
    return event


def configure_logging(level: int = logging.INFO, json_logs: bool | None = None) -> None:
    """Route stdlib and structlog records through one masking chain to stderr."""
    as_json = (not sys.stderr.isatty()) if json_logs is None else json_logs
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        structlog.processors.format_exc_info,
        mask_processor,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared[:-2], structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        # masked once, by the formatter's chain below: a second pass would mask the masks
        # ("8916***2238" reads as digits joined by "*", which a phone may be written with)
        foreign_pre_chain=shared[:-1],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            mask_processor,
            renderer,
        ],
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("rq.worker", "rq.queue", "rq.job", "alembic", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
