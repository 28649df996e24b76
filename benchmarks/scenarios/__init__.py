"""One module per scenario, each with `run(args) -> str` (the published text)."""
