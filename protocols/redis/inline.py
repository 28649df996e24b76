"""Inline commands (`PING\\r\\n`, `set k "a b"\\n`): Redis's sdssplitargs, byte for byte.

Rules (sds.c sdssplitargs, as Redis applies it to an inline line):
    - blanks (space, \\t, \\n, \\r, \\v, \\f) separate arguments; inside an unquoted argument
      only space, \\t, \\n, \\r end it (\\v and \\f are kept)
    - "double quotes": \\xHH (two hex digits), \\n \\r \\t \\b \\a, and backslash before any
      other byte stands for that byte
    - 'single quotes': only \\' is an escape
    - a quote may open in the middle of an argument (ab"c d" is `abc d`), but a closing
      quote must be followed by a blank or the end of the line
    - an unterminated quote fails the whole line ("unbalanced quotes in request")
    - the line is a C string: a NUL byte ends it
"""

from __future__ import annotations

_BLANKS = frozenset(b" \t\n\r\x0b\x0c")
"""isspace() in the C locale: what is skipped between arguments."""
_ENDS = frozenset(b" \t\n\r")
"""What ends an unquoted argument (besides the end of the line)."""
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_SIMPLE_SPLIT_UNSAFE = (b'"', b"'", b"\x0b", b"\x0c")
DQUOTE, SQUOTE, BACKSLASH = ord('"'), ord("'"), ord("\\")


def split_args(line: bytes) -> list[bytes] | None:
    """The arguments of one inline line (without its \\n), or None for unbalanced quotes."""
    nul = line.find(b"\x00")
    if nul >= 0:
        line = line[:nul]
    for byte in _SIMPLE_SPLIT_UNSAFE:
        if byte in line:
            return _split_quoted(line)
    return line.split()  # bytes.split() splits on exactly _BLANKS


def _split_quoted(line: bytes) -> list[bytes] | None:
    args: list[bytes] = []
    size = len(line)
    i = 0
    while True:
        while i < size and line[i] in _BLANKS:
            i += 1
        if i == size:
            return args
        arg = bytearray()
        i = _argument(line, i, arg)
        if i < 0:
            return None
        args.append(bytes(arg))


def _argument(line: bytes, i: int, arg: bytearray) -> int:
    """Append one argument starting at line[i] to `arg`; the index after it, -1 on error."""
    size = len(line)
    quote = 0
    while i < size:
        byte = line[i]
        if quote == DQUOTE:
            if byte == BACKSLASH and _hex_escape(line, i):
                arg.append(int(line[i + 2 : i + 4], 16))
                i += 3
            elif byte == BACKSLASH and i + 1 < size:
                i += 1
                arg.append(_ESCAPES.get(line[i], line[i]))
            elif byte == DQUOTE:
                return _after_quote(line, i)
            else:
                arg.append(byte)
        elif quote == SQUOTE:
            if byte == BACKSLASH and i + 1 < size and line[i + 1] == SQUOTE:
                i += 1
                arg.append(SQUOTE)
            elif byte == SQUOTE:
                return _after_quote(line, i)
            else:
                arg.append(byte)
        elif byte in _ENDS:
            return i + 1
        elif byte in (DQUOTE, SQUOTE):
            quote = byte
        else:
            arg.append(byte)
        i += 1
    return -1 if quote else i


def _hex_escape(line: bytes, i: int) -> bool:
    return (
        i + 3 < len(line)
        and line[i + 1] == ord("x")
        and line[i + 2] in _HEX
        and line[i + 3] in _HEX
    )


def _after_quote(line: bytes, i: int) -> int:
    """A closing quote at line[i] must be followed by a blank or the end of the line."""
    if i + 1 < len(line) and line[i + 1] not in _BLANKS:
        return -1
    return i + 1
