"""Building-block components: one contract per block, many backends (in-memory first)."""
