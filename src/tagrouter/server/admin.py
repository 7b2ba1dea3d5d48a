"""Admin keys: who may see the dashboard and reload the router.

An admin endpoint takes one of the config's ``admin_keys`` as a bearer token (``Authorization: Bearer
KEY``) or, so that a browser can open the dashboard, as the password of HTTP Basic auth (any user name).
Without admin keys the admin endpoints are off (403); a client key is refused with a 403, no key or a
wrong one with a 401 that asks a browser for the password.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping, Sequence

from tagrouter.server.errors import ApiError

#: What a 401 of an admin endpoint asks a browser for.
CHALLENGE = {"www-authenticate": 'Basic realm="tagrouter admin", charset="UTF-8"'}


def presented_key(headers: Mapping[str, str]) -> bytes | None:
    """The key a request presents: a bearer token, or the password of HTTP Basic auth."""
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return credentials.encode("utf-8", "replace")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True)
        except (binascii.Error, ValueError):
            return None
        return decoded.partition(b":")[2]
    return None


class AdminKeys:
    """Checks admin requests against ``admin_keys`` (and tells a client key apart from a wrong one)."""

    def __init__(self, admin_keys: Sequence[str], client_keys: Sequence[str]) -> None:
        self._admin = [k.encode() for k in admin_keys]
        self._client = [k.encode() for k in client_keys]

    @property
    def enabled(self) -> bool:
        return bool(self._admin)

    def check(self, headers: Mapping[str, str]) -> None:
        """Return if the request carries an admin key; else raise the :class:`ApiError` to answer."""
        if not self._admin:
            raise ApiError(
                403, "admin endpoints are off: set admin_keys in the gateway config", code="admin_disabled"
            )
        key = presented_key(headers)
        if key is not None and _matches(key, self._admin):
            return
        if key is not None and _matches(key, self._client):
            raise ApiError(
                403, "a client key cannot use admin endpoints: send an admin key", code="not_admin"
            )
        raise ApiError(
            401,
            "missing or invalid admin key (send 'Authorization: Bearer ADMIN_KEY')",
            code="invalid_api_key",
            headers=CHALLENGE,
        )


def _matches(key: bytes, keys: Sequence[bytes]) -> bool:
    """Whether ``key`` is one of ``keys``, comparing each in constant time."""
    return any([hmac.compare_digest(key, k) for k in keys])
