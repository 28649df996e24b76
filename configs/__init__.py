"""Example configs; default.yaml is embedded and used when `mecha run` gets no -c."""
