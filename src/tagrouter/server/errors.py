"""The gateway's error answers: the OpenAI error body ``{"error": {"message", "type", "param", "code"}}``.

Messages name the field, the model and the kind of failure only: never an internal address, an
environment variable or an upstream's body (those go to the log).
"""

from __future__ import annotations

import json

from fastapi.responses import Response

from tagrouter.constraints import UnroutableError
from tagrouter.errors import DataError
from tagrouter.server.feedback import (
    FeedbackConflictError,
    FeedbackForbiddenError,
    FeedbackLimitError,
    UnknownRequestError,
)
from tagrouter.server.overrides import OverrideError

#: status and error code of the bad-input errors that are not a plain 400
_DATA_ERRORS: dict[type[DataError], tuple[int, str | None]] = {
    UnknownRequestError: (404, "unknown_request_id"),
    FeedbackConflictError: (409, "feedback_conflict"),
    FeedbackForbiddenError: (403, "feedback_forbidden"),
    FeedbackLimitError: (429, "feedback_limited"),
    OverrideError: (400, "invalid_override"),
    UnroutableError: (400, "no_model_fits"),
}


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

    def content(self) -> bytes:
        """The error's JSON body (ASCII-escaped, so that text echoed from a bad request, such as a lone
        surrogate, can always be encoded)."""
        body = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return json.dumps({"error": body}).encode()

    def response(self) -> Response:
        """The error as a JSON response."""
        return Response(self.content(), self.status, self.headers, media_type="application/json")


def data_error(exc: DataError) -> ApiError:
    """The answer to bad input: a 400 naming the field (``param``), or the status and code of its kind
    (an unknown feedback request id is a 404, a request that no model can take a 400 ``no_model_fits``
    on ``messages``...)."""
    status, code = 400, None
    for kind, (status_of_kind, code_of_kind) in _DATA_ERRORS.items():
        if isinstance(exc, kind):
            status, code = status_of_kind, code_of_kind
    param = exc.field or ("messages" if isinstance(exc, UnroutableError) else None)
    return ApiError(status, str(exc), param=param, code=code)
