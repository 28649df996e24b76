"""Key hashes, as twemproxy (nutcracker) computes them, so that its users' keys stay put.

Each function maps a key (its hash tag, when one is set) to a 32-bit value. They follow
twemproxy's src/hashkit (written here from their definitions, on a little-endian machine,
where its `char` is signed: bytes from 0x80 up are sign-extended wherever twemproxy widens
a plain `char`). Names are twemproxy's, except its `crc32`, libmemcached's 15-bit variant,
which is `crc32_twemproxy` here: mecha's `crc32` (= twemproxy's `crc32a`) came first.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF


def _signed(byte: int) -> int:
    """A C `char` widened: bytes from 0x80 up are negative."""
    return byte - 256 if byte & 0x80 else byte


def md5(key: bytes) -> int:
    return int.from_bytes(hashlib.md5(key, usedforsecurity=False).digest()[:4], "little")


def crc32(key: bytes) -> int:
    return zlib.crc32(key)


def crc32_twemproxy(key: bytes) -> int:
    """libmemcached's CRC-32: the top half of the checksum, 15 bits."""
    return (zlib.crc32(key) >> 16) & 0x7FFF


def crc16(key: bytes) -> int:
    """twemproxy 0.5.0's: the CRC-16/XMODEM table, but a 32-bit register whose bits shifted
    past 16 are kept (its development versions since use CRC-16/ARC instead)."""
    crc = 0
    for byte in key:
        crc = ((crc << 8) ^ _CRC16[((crc >> 8) ^ byte) & 0xFF]) & M32
    return crc


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        value = byte << 8
        for _ in range(8):
            value = (value << 1) ^ 0x1021 if value & 0x8000 else value << 1
        table.append(value & 0xFFFF)
    return table


_CRC16 = _crc16_table()


def one_at_a_time(key: bytes) -> int:
    value = 0
    for byte in key:
        value = (value + _signed(byte)) & M32
        value = (value + (value << 10)) & M32
        value ^= value >> 6
    value = (value + (value << 3)) & M32
    value ^= value >> 11
    return (value + (value << 15)) & M32


def fnv1_64(key: bytes) -> int:
    value = 0xCBF29CE484222325
    for byte in key:
        value = (value * 0x100000001B3) & M64
        value ^= _signed(byte) & M64
    return value & M32


def fnv1a_64(key: bytes) -> int:
    """twemproxy's: the 64-bit offset basis and prime, truncated to 32 bits."""
    value = 0x84222325
    for byte in key:
        value ^= _signed(byte) & M32
        value = (value * 0x000001B3) & M32
    return value


def fnv1_32(key: bytes) -> int:
    value = 2166136261
    for byte in key:
        value = (value * 16777619) & M32
        value ^= _signed(byte) & M32
    return value


def fnv1a_32(key: bytes) -> int:
    value = 2166136261
    for byte in key:
        value ^= _signed(byte) & M32
        value = (value * 16777619) & M32
    return value


def hsieh(key: bytes) -> int:
    if not key:
        return 0
    value = 0
    rem = len(key) & 3
    end = len(key) - rem
    for i in range(0, end, 4):
        value = (value + (key[i] | key[i + 1] << 8)) & M32
        tmp = (((key[i + 2] | key[i + 3] << 8) << 11) ^ value) & M32
        value = ((value << 16) & M32) ^ tmp
        value = (value + (value >> 11)) & M32
    if rem == 3:
        value = (value + (key[end] | key[end + 1] << 8)) & M32
        value ^= (value << 16) & M32
        value ^= (_signed(key[end + 2]) << 18) & M32
        value = (value + (value >> 11)) & M32
    elif rem == 2:
        value = (value + (key[end] | key[end + 1] << 8)) & M32
        value ^= (value << 11) & M32
        value = (value + (value >> 17)) & M32
    elif rem == 1:
        value = (value + key[end]) & M32
        value ^= (value << 10) & M32
        value = (value + (value >> 1)) & M32
    return _avalanche(value)


def _avalanche(value: int) -> int:
    value ^= (value << 3) & M32
    value = (value + (value >> 5)) & M32
    value ^= (value << 4) & M32
    value = (value + (value >> 17)) & M32
    value ^= (value << 25) & M32
    return (value + (value >> 6)) & M32


def murmur(key: bytes) -> int:
    """MurmurHash2 with twemproxy's seed (0xdeadbeef times the length)."""
    m = 0x5BD1E995
    length = len(key)
    value = ((0xDEADBEEF * length) & M32) ^ (length & M32)
    end = length - (length & 3)
    for i in range(0, end, 4):
        k = int.from_bytes(key[i : i + 4], "little")
        k = (k * m) & M32
        k ^= k >> 24
        k = (k * m) & M32
        value = ((value * m) & M32) ^ k
    tail = key[end:]
    if tail:
        for shift, byte in reversed(list(enumerate(tail))):
            value ^= byte << (8 * shift)
        value = (value * m) & M32
    value ^= value >> 13
    value = (value * m) & M32
    return value ^ (value >> 15)


def jenkins(key: bytes) -> int:
    """Bob Jenkins' lookup3 hashlittle, initial value 13 (libmemcached's)."""
    length = len(key)
    a = b = c = (0xDEADBEEF + length + 13) & M32
    if not length:
        return c
    padded = key + b"\0" * (-length % 12)
    offset = 0
    while length - offset > 12:
        a, b, c = _add_words(padded, offset, a, b, c)
        a, b, c = _mix(a, b, c)
        offset += 12
    a, b, c = _add_words(padded, offset, a, b, c)
    return _final(a, b, c)


def _add_words(data: bytes, at: int, a: int, b: int, c: int) -> tuple[int, int, int]:
    return ((a + int.from_bytes(data[at : at + 4], "little")) & M32,
            (b + int.from_bytes(data[at + 4 : at + 8], "little")) & M32,
            (c + int.from_bytes(data[at + 8 : at + 12], "little")) & M32)  # fmt: skip


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & M32


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = (a - c) & M32
    a ^= _rot(c, 4)
    c = (c + b) & M32
    b = (b - a) & M32
    b ^= _rot(a, 6)
    a = (a + c) & M32
    c = (c - b) & M32
    c ^= _rot(b, 8)
    b = (b + a) & M32
    a = (a - c) & M32
    a ^= _rot(c, 16)
    c = (c + b) & M32
    b = (b - a) & M32
    b ^= _rot(a, 19)
    a = (a + c) & M32
    c = (c - b) & M32
    c ^= _rot(b, 4)
    b = (b + a) & M32
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    c ^= b
    c = (c - _rot(b, 14)) & M32
    a ^= c
    a = (a - _rot(c, 11)) & M32
    b ^= a
    b = (b - _rot(a, 25)) & M32
    c ^= b
    c = (c - _rot(b, 16)) & M32
    a ^= c
    a = (a - _rot(c, 4)) & M32
    b ^= a
    b = (b - _rot(a, 14)) & M32
    c ^= b
    c = (c - _rot(b, 24)) & M32
    return c


HASHES: dict[str, Callable[[bytes], int]] = {
    "crc32": crc32, "crc32a": crc32, "md5": md5, "crc32_twemproxy": crc32_twemproxy,
    "crc16": crc16, "one_at_a_time": one_at_a_time, "fnv1_64": fnv1_64,
    "fnv1a_64": fnv1a_64, "fnv1_32": fnv1_32, "fnv1a_32": fnv1a_32, "hsieh": hsieh,
    "murmur": murmur, "jenkins": jenkins,
}  # fmt: skip
"""By mecha's name (see the module doc for `crc32`)."""

TWEMPROXY_NAMES = {
    **{name: name for name in HASHES if name not in ("crc32", "crc32_twemproxy")},
    "crc32": "crc32_twemproxy",
}
"""A nutcracker.yml `hash:` -> mecha's name for the same function."""
