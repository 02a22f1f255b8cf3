"""API errors: one exception type, one JSON shape.

Every refusal is an :class:`ApiError` raised before anything is produced; the
route wrapper turns it into ``{"error": {"code", "message", "field"?}}`` with
its status and headers (``Retry-After`` for 429 and 503,
``WWW-Authenticate`` for 401).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

from aiohttp import web


class ApiError(Exception):
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
