"""The HTTP connection manager: the network filter that turns bytes into HTTP streams."""
