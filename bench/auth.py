"""Token validation per request: µs to validate a caller's Entra ID token (signing keys cached), against parsing it.

The simulator issues a real RS256 token and serves its tenant's discovery document and JWKS; the first
validation reads them, the rest use the cache, as a warm function instance does. Baseline, in the same
process: decoding the same token without checking anything (the least any reader of a JWT does).
"""

from __future__ import annotations

import time
from typing import Any

import jwt

from devhost.simulator import Simulator, WorldConfig
from shared.access.tokens import TokenValidator


def measure(repeats: int = 2000) -> dict[str, Any]:
    """µs per validation and per plain decode."""
    with Simulator(world=WorldConfig(customers=1)) as sim:
        portal = sim.portal
        token = portal.sign(portal.claims(portal.apps["partner-portal"]))
        validator = TokenValidator(
            authority=sim.authority,
            tenants=[sim.tenant_id],
            audiences=[portal.api_client_id],
            required_role="Usage.Read",
        )
        header = f"Bearer {token}"
        validator.validate(header)  # reads the discovery document and the keys once
        started = time.perf_counter()
        for _ in range(repeats):
            validator.validate(header)
        validate_us = (time.perf_counter() - started) / repeats * 1e6
        started = time.perf_counter()
        for _ in range(repeats):
            jwt.decode(token, options={"verify_signature": False})
        decode_us = (time.perf_counter() - started) / repeats * 1e6
    return {
        "repeats": repeats,
        "validate_us": round(validate_us, 1),
        "decode_only_us": round(decode_us, 1),
        "vs_decode": round(validate_us / decode_us, 2),
    }
