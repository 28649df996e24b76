"""Distributed lock stores."""
