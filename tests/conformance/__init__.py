"""Conformance suites: one per building block, run against every registered backend."""
