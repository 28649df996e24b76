"""The application runtime: the capability API and its components."""
