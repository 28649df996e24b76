"""mqtt_proxy: an MQTT-aware proxy in front of brokers (routing, topic ACLs, limits, stats)."""
