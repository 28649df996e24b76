"""HTTP/1.1 and HTTP/2 codecs that speak one request/response vocabulary (events.py)."""
