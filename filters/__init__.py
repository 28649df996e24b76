"""Filters: listener filters, network (L4) filters and HTTP stream filters."""
