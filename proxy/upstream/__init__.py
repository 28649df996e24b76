"""The cluster manager: named clusters of endpoints, load balancing, health, connections.

Filters and the runtime build on this package; it never imports them.
"""
