"""Structured JSON logs (structlog). Personal data stays out of INFO logs by construction:
the code logs ids, counts and outcomes, never names, emails or commit messages.

Standard-library loggers (uvicorn's error and access lines, SQLAlchemy, Alembic) go through
the same renderer, so that every line on stderr is one JSON object."""

from __future__ import annotations

import logging
import logging.config
import sys
from typing import Any

import structlog

# uvicorn's access records carry (client, method, path, http version, status) as arguments.
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


def _access_fields(_logger: Any, _name: str, event_dict: Any) -> Any:
    """An access line as fields, not as a sentence to parse again."""
    args = event_dict.pop("positional_args", ())
    if event_dict.get("logger") == "uvicorn.access" and len(args) == len(_ACCESS_FIELDS):
        event_dict.update(zip(_ACCESS_FIELDS, args, strict=True))
        event_dict["event"] = "http_request"
    return event_dict


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(level: str = "INFO") -> None:
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    formatter = {
        "()": structlog.stdlib.ProcessorFormatter,
        "foreign_pre_chain": [*_shared_processors(), structlog.stdlib.add_logger_name],
        "pass_foreign_args": True,
        "processors": [
            _access_fields,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    }
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"json": formatter},
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "formatter": "json",
                    "stream": sys.stderr,
                }
            },
            "root": {"handlers": ["stderr"], "level": numeric},
            # uvicorn's own handlers would print plain text; its records go to the root instead.
            "loggers": {
                name: {"handlers": [], "propagate": True}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
            },
        }
    )
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
