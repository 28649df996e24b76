"""Where the handover socket lives, and which handed-over socket a listener takes."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from proxy.config.model import AdminConfig, Config
from proxy.config.units import Address
from proxy.hot_restart import Handed, default_socket_path, same_address


def config(admin: Address | None) -> Config:
    return Config(listeners=(), clusters=(), admin=AdminConfig(admin) if admin else None)


def test_default_socket_path_follows_the_admin_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    path = default_socket_path(config(Address("127.0.0.1", 15000)))
    assert path == Path("/run/user/1000/mecha/hot-restart-15000.sock")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    path = default_socket_path(config(Address("127.0.0.1", 15000)))
    assert path is not None and path.parent.parent.name.startswith("mecha-")
    assert default_socket_path(config(Address("127.0.0.1", 0))) is None
    assert default_socket_path(config(None)) is None


def test_a_listener_takes_the_socket_of_its_address_or_of_an_ephemeral_port() -> None:
    with socket.socket() as sock:
        handed = Handed("web", "127.0.0.1:0", Address("127.0.0.1", 40123), sock)
        assert same_address(Address("127.0.0.1", 0), handed)
        assert same_address(Address("127.0.0.1", 40123), handed)
        assert not same_address(Address("127.0.0.1", 8080), handed)
        assert not same_address(Address("0.0.0.0", 0), handed)
