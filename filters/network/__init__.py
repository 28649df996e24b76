"""Network filters: per-connection byte-stream filters (read and write chains)."""
