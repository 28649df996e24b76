"""HTTP stream filters: one vocabulary for HTTP/1.1 and HTTP/2 requests and responses."""
