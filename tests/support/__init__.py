"""Test helpers: real processes (mecha, redis-server) and small TCP peers on loopback."""
