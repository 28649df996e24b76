"""Sans-IO RESP2/RESP3 codec for the Redis proxy.

requests.py  RequestParser: client bytes -> argument lists (hiredis fast path, Redis's
             own framing rules and error texts, limits enforced at the header)
multibulk.py Command: one multibulk command read by Redis's rules (where hiredis is not
             trusted, and to vet an incomplete command's headers)
inline.py    inline commands (`PING\\r\\n`, `set a "b c"\\n`): sdssplitargs
replies.py   ReplyParser: server bytes -> raw reply spans, forwarded untouched; helpers
             to look into a span (integer, error, top-level elements)
encode.py    commands and replies -> bytes
limits.py    RespLimits: what one connection may make the codec accept or buffer
errors.py    RespError: malformed input; `reason` is what Redis would say
"""
