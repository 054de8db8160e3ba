"""Wire format helpers: exact-Decimal JSON, Partner Center error bodies and opaque continuation tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from decimal import Decimal
from typing import Any

BOM = b"\xef\xbb\xbf"
JSON_CONTENT_TYPE = "application/json; charset=utf-8"

_DECIMAL_MARK = "@@DEC"
_DECIMAL_RE = re.compile(r'"@@DEC(-?[0-9]+(?:\.[0-9]+)?)@@"')


def _default(value: object) -> str:
    if isinstance(value, Decimal):
        # A marker string the C encoder can write; replaced by the bare literal afterwards.
        return f"{_DECIMAL_MARK}{value:f}@@"
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(obj: Any) -> str:
    """Serialise to compact JSON, writing every Decimal as a number literal with all its digits."""
    text = json.dumps(obj, ensure_ascii=False, check_circular=False, separators=(",", ":"), default=_default)
    if _DECIMAL_MARK in text:
        text = _DECIMAL_RE.sub(r"\1", text)
    return text


def json_body(obj: Any, *, bom: bool = True) -> bytes:
    """Encode a response body as UTF-8 JSON, with the byte-order mark Partner Center puts in front."""
    data = dumps(obj).encode("utf-8")
    return BOM + data if bom else data


def pc_error(code: int | str, description: str) -> dict[str, Any]:
    """A Partner Center error body."""
    return {"code": code, "description": description, "data": [], "source": "PartnerFD"}


MISSING_TOKEN = pc_error(800001, "Missing partner token")
NO_RELATIONSHIP = pc_error(20002, "Partner does not have a relationship with this customer")
SUBSCRIPTION_NOT_FOUND = pc_error(20003, "Subscription not found")
UNEXPECTED_ERROR = pc_error(800003, "Unexpected error")
NO_USAGE_DATA = pc_error(3000, "Customer does not have usage data")
APP_USER_REQUIRED = pc_error(
    800002, "This operation requires App+User (delegated) credentials; app-only tokens are not supported"
)


def link(uri: str, token: str | None = None) -> dict[str, Any]:
    """A Partner Center `Link`, optionally carrying a continuation token header."""
    headers = [] if token is None else [{"key": "MS-ContinuationToken", "value": token}]
    return {"uri": uri, "method": "GET", "headers": headers}


class TokenCodec:
    """Signs and reads opaque continuation tokens (deterministic for a given key)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def encode(self, payload: dict[str, Any]) -> str:
        """Token text for a payload."""
        raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        body = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        sig = hmac.new(self._key, raw, hashlib.sha256).hexdigest()[:20]
        return f"{body}.{sig}"

    def decode(self, token: str | None) -> dict[str, Any] | None:
        """The payload of a token this codec made, or None for anything else."""
        if not token or "." not in token:
            return None
        body, _, sig = token.strip().rpartition(".")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except ValueError:
            return None
        expected = hmac.new(self._key, raw, hashlib.sha256).hexdigest()[:20]
        if not hmac.compare_digest(expected, sig):
            return None
        try:
            payload = json.loads(raw)
        except ValueError:
            return None
        return payload if isinstance(payload, dict) else None
