"""Errors components raise; the API layers turn them into Dapr's status and error code."""

from __future__ import annotations


class ComponentError(Exception):
    """A backend failed (unreachable, timed out, refused): the caller gets an INTERNAL-like
    error, never a hang. `retryable` tells whether trying again may succeed."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class EtagMismatch(ComponentError):
    """The stored item's etag is not the one the caller gave (first-write wins): 409."""

    def __init__(self, key: str) -> None:
        super().__init__(f"possible etag mismatch for key {key!r}", retryable=False)
        self.key = key


class EtagInvalid(ComponentError):
    """The caller's etag cannot be one of this store's (malformed): 400."""

    def __init__(self, key: str, etag: str) -> None:
        super().__init__(f"invalid etag {etag!r} for key {key!r}", retryable=False)


class NotFound(ComponentError):
    """A secret, a configuration key or a lock that does not exist."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found", retryable=False)


class NotSupported(ComponentError):
    """The component lacks the feature the request needs (e.g. TTL, transactions)."""

    def __init__(self, feature: str, component_type: str) -> None:
        super().__init__(f"{component_type} does not support {feature}", retryable=False)


class BadMetadata(ComponentError):
    """A component's metadata is wrong; raised at init, with the metadata key named."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"metadata {key!r}: {problem}", retryable=False)
        self.key = key
