"""Sans-IO protocol codecs: bytes in, messages out; messages in, bytes out. No I/O here."""
