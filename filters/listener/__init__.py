"""Listener filters: run on a new connection before its network filter chain is chosen."""
