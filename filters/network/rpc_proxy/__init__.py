"""rpc_proxy: routes framed RPC (msgpack-RPC first) by method over multiplexed upstreams."""
