"""runtime_api: the Dapr-compatible HTTP API, as the terminal HTTP filter of a listener."""
