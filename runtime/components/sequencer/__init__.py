"""Sequencers (Layotto): ids strictly increasing per key."""
