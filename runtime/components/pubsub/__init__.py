"""Pub/sub brokers."""
