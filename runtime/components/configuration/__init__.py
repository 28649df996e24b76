"""Configuration stores."""
