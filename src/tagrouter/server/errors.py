"""The gateway's error answers: the OpenAI error body ``{"error": {"message", "type", "param", "code"}}``.

Messages name the field, the model and the kind of failure only: never an internal address, an
environment variable or an upstream's body (those go to the log).
"""

from __future__ import annotations

import json

from fastapi.responses import Response


class ApiError(Exception):
    """An error answered with the OpenAI error body (and extra headers, e.g. ``Retry-After``)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers

    def response(self) -> Response:
        """The error as a JSON response (ASCII-escaped, so that text echoed from a bad request, such as a
        lone surrogate, can always be encoded)."""
        body = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        content = json.dumps({"error": body}).encode()
        return Response(content, self.status, self.headers, media_type="application/json")
