"""The mecha process: CLI, config, listeners, connections, cluster manager, admin."""
