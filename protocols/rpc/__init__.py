"""Sans-IO framed RPC codecs for the RPC proxy, in the spirit of MOSN's xprotocol.

api.py          the family contract: Frame, FrameKind, FrameDecoder, RpcCodec, RpcError
msgpack_rpc.py  msgpack-RPC (requests, responses, notifications over a msgpack stream)

CODECS is the registry by name: a new codec is one module and one line below. (The table
lives here rather than in api.py because every codec module imports api.py.)
"""

from __future__ import annotations

from protocols.rpc.api import Frame, FrameDecoder, FrameKind, RpcCodec, RpcError
from protocols.rpc.msgpack_rpc import MSGPACK_RPC

__all__ = ["CODECS", "Frame", "FrameDecoder", "FrameKind", "RpcCodec", "RpcError", "lookup"]

CODECS: dict[str, RpcCodec] = {
    MSGPACK_RPC.name: MSGPACK_RPC,
}


def lookup(name: str) -> RpcCodec:
    """The codec registered as `name`; LookupError names the known ones."""
    codec = CODECS.get(name)
    if codec is None:
        raise LookupError(f"unknown RPC codec {name!r} (known: {', '.join(sorted(CODECS))})")
    return codec
