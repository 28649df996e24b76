"""gRPC statuses of the runtime API, with Dapr's codes and `google.rpc.ErrorInfo` reasons.

The building-block helpers shared with the HTTP API raise `ApiError` (HTTP status and Dapr's
`ERR_...` code); `from_api_error` turns one into the status Dapr's gRPC server gives for the
same failure: Dapr pairs each error code with a gRPC code of its own (an unknown store is
INVALID_ARGUMENT, a block with no component FAILED_PRECONDITION, an etag mismatch ABORTED),
which the HTTP status alone does not tell.
"""

from __future__ import annotations

from collections.abc import Mapping

from filters.http.runtime_api.base import ApiError
from protocols.grpc.status import ErrorInfo, Status, StatusCode

DOMAIN = "dapr.io"

# Dapr's gRPC code for an error code, where the HTTP status would map it differently.
CODES: dict[str, StatusCode] = {
    "ERR_STATE_STORE_NOT_CONFIGURED": StatusCode.FAILED_PRECONDITION,
    "ERR_PUBSUB_NOT_CONFIGURED": StatusCode.FAILED_PRECONDITION,
    "ERR_SECRET_STORES_NOT_CONFIGURED": StatusCode.FAILED_PRECONDITION,
    "ERR_LOCK_STORE_NOT_CONFIGURED": StatusCode.FAILED_PRECONDITION,
    "ERR_CONFIGURATION_STORE_NOT_CONFIGURED": StatusCode.FAILED_PRECONDITION,
    "ERR_SEQUENCER_STORE_NOT_CONFIGURED": StatusCode.FAILED_PRECONDITION,
    "ERR_SECRET_STORE_NOT_FOUND": StatusCode.INVALID_ARGUMENT,
    "ERR_TOPIC_NAME_EMPTY": StatusCode.INVALID_ARGUMENT,
    "ERR_PUBSUB_NOT_FOUND": StatusCode.INVALID_ARGUMENT,
    "ERR_STATE_STORE_NOT_SUPPORTED": StatusCode.UNIMPLEMENTED,
    "ERR_NOT_SUPPORTED_STATE_OPERATION": StatusCode.UNIMPLEMENTED,
}

# Dapr's ErrorInfo reasons (dapr/kit's CodePrefix* + postfix) for the errors that have one.
REASONS: dict[str, str] = {
    "ERR_STATE_STORE_NOT_CONFIGURED": "DAPR_STATE_NOT_CONFIGURED",
    "ERR_STATE_STORE_NOT_FOUND": "DAPR_STATE_NOT_FOUND",
    "ERR_STATE_STORE_NOT_SUPPORTED": "DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED",
    "ERR_PUBSUB_NOT_CONFIGURED": "DAPR_PUBSUB_NOT_CONFIGURED",
    "ERR_PUBSUB_NOT_FOUND": "DAPR_PUBSUB_NOT_FOUND",
    "ERR_TOPIC_NAME_EMPTY": "DAPR_PUBSUB_TOPIC_NAME_EMPTY",
    "ERR_PUBSUB_FORBIDDEN": "DAPR_PUBSUB_FORBIDDEN",
    "ERR_PUBSUB_PUBLISH_MESSAGE": "DAPR_PUBSUB_PUBLISH_MESSAGE",
    "ERR_PUBSUB_CLOUD_EVENTS_SER": "DAPR_PUBSUB_CLOUD_EVENT_CREATION",
    "ERR_PUBSUB_EVENTS_SER": "DAPR_PUBSUB_UNMARSHAL_EVENTS",
    "ERR_SECRET_STORES_NOT_CONFIGURED": "DAPR_SECRET_NOT_CONFIGURED",
    "ERR_SECRET_STORE_NOT_FOUND": "DAPR_SECRET_NOT_FOUND",
    "ERR_LOCK_STORE_NOT_CONFIGURED": "DAPR_LOCK_NOT_CONFIGURED",
    "ERR_LOCK_STORE_NOT_FOUND": "DAPR_LOCK_NOT_FOUND",
    "ERR_CONFIGURATION_STORE_NOT_CONFIGURED": "DAPR_CONFIGURATION_NOT_CONFIGURED",
    "ERR_CONFIGURATION_STORE_NOT_FOUND": "DAPR_CONFIGURATION_NOT_FOUND",
}

# gRPC's mapping of HTTP statuses, for the rest.
HTTP_CODES = {
    400: StatusCode.INVALID_ARGUMENT,
    401: StatusCode.UNAUTHENTICATED,
    403: StatusCode.PERMISSION_DENIED,
    404: StatusCode.NOT_FOUND,
    405: StatusCode.UNIMPLEMENTED,
    409: StatusCode.ABORTED,
    412: StatusCode.FAILED_PRECONDITION,
    413: StatusCode.RESOURCE_EXHAUSTED,
    429: StatusCode.RESOURCE_EXHAUSTED,
    501: StatusCode.UNIMPLEMENTED,
    503: StatusCode.UNAVAILABLE,
    504: StatusCode.DEADLINE_EXCEEDED,
}


class RpcError(Exception):
    """End the call with this status (and an ErrorInfo when a reason is given)."""

    def __init__(
        self,
        code: StatusCode,
        message: str,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        domain: str = DOMAIN,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.info = ErrorInfo(reason, domain, dict(metadata or {})) if reason else None

    def status(self) -> Status:
        return Status(self.code, self.message, self.info)


def from_api_error(error: ApiError, domain: str = DOMAIN) -> RpcError:
    """The status for a shared helper's error; the HTTP API's code is kept as `errorCode`."""
    metadata = {"errorCode": error.code}
    if error.status == 409:  # only the state API answers 409: an etag mismatch
        return RpcError(
            StatusCode.ABORTED, error.message, "DAPR_STATE_ETAG_MISMATCH", metadata, domain
        )
    code = CODES.get(error.code) or HTTP_CODES.get(error.status, StatusCode.INTERNAL)
    reason = REASONS.get(error.code) or "DAPR_" + error.code.removeprefix("ERR_")
    return RpcError(code, error.message, reason, metadata, domain)


def invalid(message: str) -> RpcError:
    return RpcError(StatusCode.INVALID_ARGUMENT, message, "DAPR_MALFORMED_REQUEST")
