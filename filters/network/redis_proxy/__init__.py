"""redis_proxy: a command-aware terminal filter in front of Redis shards or a Redis Cluster."""
