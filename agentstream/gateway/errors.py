"""API errors: one exception type, one JSON shape.

Every refusal is an :class:`ApiError` raised before anything is produced; the
route wrapper turns it into ``{"error": {"code", "message", "field"?}}`` with
its status and headers (``Retry-After`` for 429 and 503,
``WWW-Authenticate`` for 401). What a handler lets through is mapped by the
error tree (:mod:`agentstream.errors`) in :func:`api_error_for`: the streams
layer's errors and the Kafka client's mean 503 ``kafka_unavailable``, a lost
Postgres connection 503 ``postgres_unavailable``; any other error of ours is a
bug and answers 500 in the same JSON shape.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping

import asyncpg
from aiohttp import web
from aiokafka.errors import KafkaError
from sqlalchemy.exc import InterfaceError, OperationalError

from agentstream.errors import AgentstreamError
from streams.errors import StreamsError

log = logging.getLogger(__name__)


class ApiError(AgentstreamError):
    """A request refused with ``status``; ``code`` is stable, ``message`` is for people."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        error: dict[str, str] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return web.Response(
            status=self.status,
            body=json.dumps({"error": error}).encode("utf-8"),
            content_type="application/json",
            headers=self.headers,
        )


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def invalid(field: str, reason: str, code: str = "invalid_field") -> ApiError:
    return ApiError(422, code, f"{field}: {reason}" if field else reason, field=field or None)


def not_found(what: str = "session") -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def retry_later(status: int, code: str, message: str, seconds: float) -> ApiError:
    """429 or 503 with a whole-second ``Retry-After`` (at least 1)."""
    after = str(max(1, math.ceil(seconds)))
    return ApiError(status, code, message, headers={"Retry-After": after})


# Third-party errors that mean "a dependency is away", not "this request is wrong".
_KAFKA_AWAY = (KafkaError, StreamsError)
_POSTGRES_AWAY = (OSError, asyncpg.PostgresConnectionError, OperationalError, InterfaceError)


def api_error_for(error: Exception, route: str) -> ApiError | None:
    """The answer for an error a handler raised, by kind; None for one that is not ours."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, _KAFKA_AWAY):
        log.warning("%s: Kafka unavailable: %s", route, error)
        return retry_later(503, "kafka_unavailable", "Kafka is unavailable", 1.0)
    if isinstance(error, _POSTGRES_AWAY):
        log.warning("%s: Postgres unavailable: %s", route, error)
        return retry_later(503, "postgres_unavailable", "Postgres is unavailable", 1.0)
    if isinstance(error, AgentstreamError):
        log.exception("%s: unexpected %s", route, type(error).__name__, exc_info=error)
        return ApiError(500, "internal", "internal error")
    return None
