"""Config loading and validation: YAML, ${VAR} expansion, typed model."""
