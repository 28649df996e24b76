"""Commands the proxy answers itself: connection state, not data."""

from __future__ import annotations

from typing import TYPE_CHECKING

from protocols.redis.encode import encode_bulk, encode_integer, encode_map, error_span

if TYPE_CHECKING:
    from filters.network.redis_proxy.session import RedisSession

OK = b"+OK\r\n"
PONG = b"+PONG\r\n"
VERSION = "7.0.0"


class LocalCommands:
    """Stateless: the session is an argument, so that a session is not held in a cycle
    (session -> its commands -> session) that only the cyclic GC would free, with the
    partial command it was reading."""

    __slots__ = ()

    def run(self, session: RedisSession, name: bytes, args: list[bytes]) -> bytes:
        handler = getattr(self, "_" + name.decode().lower(), None)
        assert handler is not None, f"LOCAL command without a handler: {name!r}"
        result: bytes = handler(session, args)
        return result

    def _ping(self, session: RedisSession, args: list[bytes]) -> bytes:
        if len(args) > 2:
            return _arity("ping")
        return encode_bulk(args[1]) if len(args) == 2 else PONG

    def _echo(self, session: RedisSession, args: list[bytes]) -> bytes:
        return encode_bulk(args[1]) if len(args) == 2 else _arity("echo")

    def _quit(self, session: RedisSession, args: list[bytes]) -> bytes:
        session.close_after_replies()
        return OK

    def _select(self, session: RedisSession, args: list[bytes]) -> bytes:
        if len(args) != 2:
            return _arity("select")
        if args[1] != b"0":
            return error_span("SELECT is not allowed: the proxy serves database 0 only")
        return OK

    def _auth(self, session: RedisSession, args: list[bytes]) -> bytes:
        if len(args) not in (2, 3):
            return _arity("auth")
        if session.shared.config.password is None:
            return error_span(
                "AUTH <password> called without any password configured for the default user. "
                "Are you sure your configuration is correct?"
            )
        username = args[1] if len(args) == 3 else None
        if not session.check_password(username, args[-1]):
            return b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
        session.authenticated = True
        return OK

    def _hello(self, session: RedisSession, args: list[bytes]) -> bytes:
        protocol = 3 if session.resp3 else 2
        rest = args[1:]
        if rest:
            if rest[0] not in (b"2", b"3"):
                return b"-NOPROTO unsupported protocol version\r\n"
            protocol = int(rest[0])
            rest = rest[1:]
        while rest:
            option = rest[0].upper()
            if option == b"AUTH" and len(rest) >= 3:
                answer = self._auth(session, [b"AUTH", rest[1], rest[2]])
                if answer != OK:
                    return answer
                rest = rest[3:]
            elif option == b"SETNAME" and len(rest) >= 2:
                session.name = rest[1]
                rest = rest[2:]
            else:
                return error_span(
                    f"syntax error in HELLO option '{rest[0][:32].decode('latin-1')}'"
                )
        if not session.authenticated:
            return b"-NOAUTH HELLO must be called with the client already authenticated\r\n"
        session.resp3 = protocol == 3
        mode = "cluster" if session.shared.slot_map is not None else "standalone"
        return encode_map(
            {"server": "redis", "version": VERSION, "proto": protocol, "id": session_id(session),
             "mode": mode, "role": "master", "modules": []},
            resp3=session.resp3,
        )  # fmt: skip

    def _reset(self, session: RedisSession, args: list[bytes]) -> bytes:
        session.resp3 = False
        session.name = None
        session.authenticated = session.shared.config.password is None
        return b"+RESET\r\n"

    def _client(self, session: RedisSession, args: list[bytes]) -> bytes:
        if len(args) < 2:
            return _arity("client")
        sub = args[1].upper()
        if sub == b"SETNAME" and len(args) == 3:
            session.name = args[2] or None
            return OK
        if sub == b"GETNAME":
            return encode_bulk(session.name)
        if sub == b"ID":
            return encode_integer(session_id(session))
        if sub in (b"SETINFO", b"NO-EVICT", b"NO-TOUCH"):
            return OK
        if sub in (b"INFO", b"LIST"):
            info = session.callbacks.info
            line = f"id={session_id(session)} addr={info.downstream_remote} name=" + (
                (session.name or b"").decode("latin-1")
            )
            return encode_bulk(line.encode() + b"\n")
        return error_span(f"CLIENT {sub[:32].decode('latin-1')} is not supported by the proxy")

    def _info(self, session: RedisSession, args: list[bytes]) -> bytes:
        shared = session.shared
        endpoints = ",".join(str(e.address) for e in shared.cluster.endpoints)
        lines = [
            "# Server", f"redis_version:{VERSION}", "proxy:mecha",
            f"redis_mode:{'cluster' if shared.slot_map is not None else 'standalone'}",
            "# Proxy", f"upstream_cluster:{shared.cluster.name}", f"upstream_endpoints:{endpoints}",
            "# Keyspace",
        ]  # fmt: skip
        return encode_bulk(("\r\n".join(lines) + "\r\n").encode())


LOCAL = LocalCommands()


def session_id(session: RedisSession) -> int:
    return id(session) & 0x7FFFFFFF


def _arity(command: str) -> bytes:
    return error_span(f"wrong number of arguments for '{command}' command")
