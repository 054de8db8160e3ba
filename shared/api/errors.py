"""The API's errors: Partner Center's ``{code, description}`` shape, its codes, and the responses they become."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from shared.api.messages import Response, json_response


class ApiError(Exception):
    """A request the API answers with an error body ``{code, description}`` in Partner Center's shape."""

    def __init__(
        self,
        status: int,
        code: int,
        description: str,
        *,
        headers: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description
        self.headers = dict(headers or {})
        self.correlation_id = correlation_id  # when the log holds more: in the body and MS-CorrelationId


# Error codes. Partner Center's own where the meaning is the same, so a portal written against it reacts the
# same way; the 9xxxxx codes are this API's.
CODE_NO_RELATIONSHIP = 20002
CODE_SUBSCRIPTION_NOT_FOUND = 20003
CODE_NO_USAGE_DATA = 3000
CODE_BAD_REQUEST = 900400
CODE_NOT_FOUND = 900404
CODE_METHOD_NOT_ALLOWED = 900405
CODE_NOT_COVERED = 900409  # the route does not serve this kind of subscription; the description names the one that does
CODE_INTERNAL = 900500
CODE_TOTAL_WITHHELD = 900451  # a customer-level total that holds subscriptions outside the caller's grant
CODE_COST_WITHHELD = 900452  # the partner's cost, to a caller shown prices under its price rule only


def bad_request(description: str) -> ApiError:
    """400: a parameter is missing or malformed."""
    return ApiError(400, CODE_BAD_REQUEST, description)


def no_relationship(customer_id: str) -> ApiError:
    """403/20002 as upstream: the partner has no relationship with the customer, so nothing of it can be read."""
    return ApiError(
        403,
        CODE_NO_RELATIONSHIP,
        f"The partner has no reseller relationship with customer {customer_id} (Partner Center answers "
        "403/20002), so its subscriptions and usage cannot be read; re-establish the relationship in Partner Center.",
    )


def not_found(description: str, code: int = CODE_NOT_FOUND) -> ApiError:
    """404: no such route, customer, subscription or stored data."""
    return ApiError(404, code, description)


def no_such_route() -> ApiError:
    """404 for a path no route serves (and for a route the caller may not use: the same answer)."""
    return not_found("No such resource. See /api/openapi.json for the routes this API serves.")


def unknown_customer(customer_id: str) -> ApiError:
    """404 for a customer this service does not know (and, to a scoped caller, one outside its grant)."""
    return not_found(f"Customer {customer_id} is not known to this service.")


def unknown_subscription(customer_id: str, subscription_id: str) -> ApiError:
    """404 for a subscription a known customer does not have (or one outside the caller's grant)."""
    return not_found(
        f"Subscription {subscription_id} is not known for customer {customer_id}.", CODE_SUBSCRIPTION_NOT_FOUND
    )


def total_withheld(customer_id: str) -> ApiError:
    """403 for a customer-level total of a customer the caller sees only in part (a reseller that sold some of its
    subscriptions): the total is stored, but it holds what others sold; the caller's own part is elsewhere."""
    return ApiError(
        403,
        CODE_TOTAL_WITHHELD,
        f"Customer {customer_id}'s totals include subscriptions outside this application's grant, so they are "
        f"withheld (they are stored). The spend of the subscriptions in the grant is at "
        f"/api/scoped/v1/customers/{customer_id}/spend.",
    )


def no_rated_usage(customer_id: str, entitlement_id: str | None = None) -> ApiError:
    """404 for a customer or Azure subscription without stored rated usage (or outside the caller's grant)."""
    subject = f"Azure subscription {entitlement_id} of customer {customer_id}" if entitlement_id else customer_id
    return not_found(
        f"No Azure plan rated usage is stored for {subject}. It appears after fetch_rated_usage stores an export "
        "that holds it (usage shows about a day after it happens); legacy MS-AZR-0145P subscriptions are served "
        "by the utilization route instead.",
        CODE_NO_USAGE_DATA,
    )


def error_response(error: ApiError) -> Response:
    """The error body, never cached."""
    payload: dict[str, object] = {"code": error.code, "description": error.description}
    headers = {"Cache-Control": "no-store", **error.headers}
    if error.correlation_id:
        payload["correlationId"] = error.correlation_id
        headers["MS-CorrelationId"] = error.correlation_id
    return json_response(error.status, payload, headers)


def internal_error_response(correlation_id: str | None = None) -> Response:
    """500 without any detail of the failure: the correlation id finds it in the logs."""
    correlation_id = correlation_id or str(uuid.uuid4())
    payload = {
        "code": CODE_INTERNAL,
        "description": f"Internal error; quote correlation id {correlation_id} to the operator.",
        "correlationId": correlation_id,
    }
    return json_response(500, payload, {"Cache-Control": "no-store", "MS-CorrelationId": correlation_id})
