"""Peers and load generators run as separate processes by the scenarios (`python -m ...`).

rpc_server   msgpack-RPC backend: `add` and `echo`, one uvloop process
rpc_client   closed-loop msgpack-RPC callers, one call in flight per connection; prints JSON
mqtt_load    MQTT publishers and one subscriber, QoS 0 or 1; prints JSON
"""
