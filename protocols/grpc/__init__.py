"""gRPC over HTTP/2, sans-IO: message framing, timeouts, statuses and rich error details."""
