"""Differential fuzz of the HTTP/1.1 codec against h11: generated and mutated requests and
responses go through mecha's parser and through h11, whole and split at random places.
Both accept with the same messages (start line, header fields, Content-Length, body,
trailers, keep-alive, tunnel bytes), or both reject - except where an explicit allowance
below names the rule that makes mecha's answer right.

Fast by default (a few seconds); `MECHA_FUZZ=deep` runs thousands of examples per test.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.unit.h1_cases import one_by_one
from tests.unit.h1_outcomes import (
    Msg,
    Outcome,
    informational,
    ours_fetch,
    ours_serve,
    theirs_fetch,
    theirs_serve,
)
from tests.unit.h1_wire import Asked, maybe_mutated, pipelined_requests, pipelined_responses
from tests.unit.h1_wire import splits as split_strategy

settings.register_profile(
    "h1-diff-fast",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "h1-diff-deep",
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile(
    "h1-diff-deep" if os.environ.get("MECHA_FUZZ") == "deep" else "h1-diff-fast"
)

# -- comparison ------------------------------------------------------------------------------


@dataclass
class Diff:
    """The first message on which the parsers disagree."""

    kind: str
    """"ours_rejects" (h11 accepted it), "theirs_rejects" (mecha accepted it), "differ"."""
    index: int
    data: bytes
    ours: Msg | None
    theirs: Msg | None
    our_error: str
    their_error: str
    rest: bytes
    """What h11's driver left unread when it stopped."""
    failed_at: int
    """How far into the input h11 had read when it failed."""

    def head(self) -> bytes:
        """The bytes of h11's head of the message (b"" when h11 has none)."""
        if self.theirs is None:
            return b""
        start, head_end, _ = self.theirs.span
        return self.data[start:head_end]

    def after_head(self) -> bytes:
        """The bytes after h11's head of the message (its body and what follows)."""
        return self.data[self.theirs.span[1] :] if self.theirs is not None else b""


def first_difference(data: bytes, ours: Outcome, theirs: Outcome) -> Diff | None:
    index = 0
    while True:
        a, b = ours.get(index), theirs.get(index)
        a_done = a is not None and a.complete
        b_done = b is not None and b.complete
        if a_done and b_done and a == b:
            assert a is not None
            if a.tunnel is not None or not a.keep_alive:
                return None  # both stop reading messages here
            index += 1
            continue
        if not a_done and not b_done and (ours.error is None) == (theirs.error is None):
            return None  # both rejected this message, or both ended before it
        if a_done and b_done:
            kind = "differ"
        else:
            kind = "theirs_rejects" if a_done or ours.error is None else "ours_rejects"
        our_error, their_error = ours.error or "", theirs.error or ""
        return Diff(kind, index, data, a, b, our_error, their_error, theirs.rest, theirs.failed_at)


Reread = Callable[[bytes, list[Msg]], Outcome]
"""h11 on other input, after mecha's messages in the list (the responses it skips answer
some of the requests)."""


def compare(data: bytes, ours: Outcome, theirs: Outcome, h11_on: Reread) -> None:
    """Fail unless the outcomes agree or an allowance explains their first difference. An
    allowance may instead give h11 other input and say how many of mecha's messages that
    input skips (the input without a construct mecha tolerates and h11 does not, or what
    follows a message h11 will not read past); then the comparison goes on."""
    skipped: list[Msg] = []
    for _ in range(8):
        diff = first_difference(data, ours, theirs)
        if diff is None:
            return
        verdicts = (allowance(diff) for allowance in ALLOWANCES)
        verdict = next((v for v in verdicts if v is not False), False)
        if verdict is True:
            return
        if verdict is False:
            raise AssertionError(
                f"{diff.kind} at message {diff.index}: {data!r}\n"
                f" ours:   {diff.ours} {diff.our_error}\n theirs: {diff.theirs} {diff.their_error}"
            )
        data, skip = verdict
        skipped += ours.messages[:skip]
        theirs = h11_on(data, skipped)
        ours = Outcome(ours.messages[skip:], ours.error)
    raise AssertionError(f"too many rereads: {data!r}")


def check_same_split(whole: Outcome, split: Outcome) -> None:
    """h11's answer does not depend on how the bytes were cut (spans aside)."""
    assert completed(whole) == completed(split)
    assert (whole.error is None) == (split.error is None), (whole.error, split.error)


def check_coarser_cut(bytewise: Outcome, coarser: Outcome) -> None:
    """mecha finds the same messages and gives the same verdict however the bytes are cut.
    A feed that raises drops the events it made, except whole final messages: so with
    coarser cuts only 1xx heads just before the bad bytes may be missing."""
    fine, coarse = completed(bytewise), completed(coarser)
    assert (bytewise.error is None) == (coarser.error is None), (bytewise.error, coarser.error)
    if bytewise.error is None:
        assert coarse == fine
        return
    assert coarse == fine[: len(coarse)]
    assert all(informational(m.start[0]) for m in fine[len(coarse) :]), fine[len(coarse) :]


def completed(outcome: Outcome) -> list[Msg]:
    out = []
    for msg in outcome.messages:
        if not msg.complete and (outcome.error or msg.tunnel is None):
            break
        out.append(msg)
    return out


# -- allowances ------------------------------------------------------------------------------
# Each one names the place where mecha answers differently from h11 on purpose, the rule it
# follows, and how to tell from the input (not from mecha's answer alone) that the case
# applies. A difference that no allowance explains fails the test.

Verdict = bool | tuple[bytes, int]
"""False: does not apply; True: explains the difference (and ends the comparison); (input,
n): h11 reads `input` instead, compared with mecha's messages after the first n."""
ALLOWANCES: list[Callable[[Diff], Verdict]] = []


def allowance(check: Callable[[Diff], Verdict]) -> Callable[[Diff], Verdict]:
    ALLOWANCES.append(check)
    return check


HTTP_VERSIONS = (b"HTTP/1.0", b"HTTP/1.1")
CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"'
# RFC 9112 7.1 and 7.1.1: chunk-size [ chunk-ext ] CRLF, BWS around ";" and "=" (at most 16
# hex digits: a size has to fit 64 bits)
CHUNK_LINE = re.compile(
    rb"[0-9A-Fa-f]{1,16}(?:[ \t]*;[ \t]*" + TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:" + TOKEN + rb"|" + QUOTED + rb"))?)*"
)  # fmt: skip
# RFC 9112 3.2 (Host = uri-host [ ":" port ], RFC 3986 3.2.2) and 3.2.3 (authority-form)
URI_HOST = rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)"
HOST = re.compile(URI_HOST + rb"(?::[0-9]*)?")
AUTHORITY = re.compile(URI_HOST + rb":[0-9]+")


def we_reject(diff: Diff, *reasons: str) -> Msg | None:
    """h11's message, when mecha rejected it (h11 accepting it) for one of `reasons`."""
    if diff.kind != "ours_rejects" or diff.theirs is None:
        return None
    return diff.theirs if any(r in diff.our_error for r in reasons) else None


def values(msg: Msg, name: bytes) -> list[bytes]:
    return [v for k, v in msg.fields if k == name]


def raw_target(head: bytes) -> bytes:
    return re.split(rb"[\r\n]", head, maxsplit=1)[0].split(b" ")[1]


def chunk_lines(body: bytes) -> tuple[list[bytes], bytes]:
    """The chunk-size lines of a chunked body h11 accepted (by h11's own looser grammar),
    and its trailer section."""
    lines, pos = [], 0
    while (end := body.find(b"\r\n", pos)) >= 0:
        lines.append(body[pos:end])
        digits = re.match(rb"[0-9A-Fa-f]*", body[pos:end])
        size = int(digits.group() or b"0", 16) if digits else 0
        pos = end + 2 + size + 2 if size else end + 2
        if not size:
            break
    return lines, body[pos:]


def chunked_body(diff: Diff, msg: Msg) -> bytes:
    """h11's bytes of the chunked body of `msg` (empty when it is not chunked)."""
    if not values(msg, b"transfer-encoding"):
        return b""
    _, head_end, end = msg.span
    return diff.data[head_end:end]


# -- mecha refuses what h11 takes


@allowance
def http_version(diff: Diff) -> bool:
    """RFC 9112 2.3: mecha speaks HTTP/1.0 and HTTP/1.1 only; a server answers another
    version with 505 (RFC 9110 15.6.6), a client fails the response. h11 takes HTTP/x.y."""
    msg = we_reject(diff, "unsupported HTTP version")
    return msg is not None and msg.start[-1] not in HTTP_VERSIONS


@allowance
def request_target_form(diff: Diff) -> bool:
    """RFC 9112 3.2: origin-form, absolute-form with a valid authority and no userinfo
    (RFC 9110 4.2.4), authority-form for CONNECT only (3.2.3), "*" for OPTIONS only
    (3.2.4). h11 takes any visible characters."""
    msg = we_reject(diff, "malformed request target", "CONNECT target is not host:port")
    if msg is None:
        return False
    method, target = msg.start[0], raw_target(diff.head())
    if method == b"CONNECT":
        return AUTHORITY.fullmatch(target) is None
    if target == b"*":
        return method != b"OPTIONS"
    absolute = re.fullmatch(rb"[A-Za-z][A-Za-z0-9+.\-]*://([^/?#]*).*", target)
    return target[:1] != b"/" and (absolute is None or HOST.fullmatch(absolute.group(1)) is None)


@allowance
def host_value(diff: Diff) -> bool:
    """RFC 9112 3.2: a server answers 400 to a Host field with an invalid value; h11 does
    not look at the value."""
    msg = we_reject(diff, "invalid Host header")
    return msg is not None and any(HOST.fullmatch(h) is None for h in values(msg, b"host"))


@allowance
def request_line_length(diff: Diff) -> bool:
    """RFC 9112 3: a server answers a request-target longer than it wishes to parse with 414;
    mecha's bound on the request line is 8 KiB, h11 only bounds an incomplete head (16 KiB)."""
    msg = we_reject(diff, "start line too long")
    return msg is not None and len(re.split(rb"[\r\n]", diff.head(), maxsplit=1)[0]) > 8 * 1024


@allowance
def obsolete_line_folding(diff: Diff) -> bool:
    """RFC 9112 5.2: a server rejects obs-fold with 400; a proxy that gets it in a response
    discards the message (502). h11 unfolds it."""
    msg = we_reject(diff, "obsolete line folding in header")
    return msg is not None and re.search(rb"\n[ \t]", diff.head() + diff.after_head()) is not None


@allowance
def bare_line_feed(diff: Diff) -> bool:
    """RFC 9112 2.2: a recipient MAY take a lone LF for CRLF; mecha does not, since a proxy
    that ends lines differently from the next hop frames messages differently (smuggling).
    h11 does, so where mecha's head ends (and why it fails) differs."""
    msg = we_reject(diff, "")
    if msg is None:
        return False
    trailer_section = chunk_lines(chunked_body(diff, msg))[1]
    return re.search(rb"(?<!\r)\n", diff.head() + trailer_section) is not None


@allowance
def control_characters(diff: Diff) -> bool:
    """RFC 9110 5.5 (field values) and RFC 9112 4 (reason-phrase): no control characters
    but HTAB. h11 lets through all but NUL, CR, LF, VT and FF."""
    msg = we_reject(diff, "invalid character in header", "malformed status line")
    if msg is None:
        return False
    texts = [v for _, v in msg.fields + msg.trailers]
    reason = msg.start[1]
    if isinstance(msg.start[0], int) and isinstance(reason, bytes):
        texts.append(reason)
    return any(CTL.search(text) for text in texts)


@allowance
def transfer_encoding_and_content_length(diff: Diff) -> bool:
    """RFC 9112 6.3 (3): a message with both "ought to be handled as an error" (a request
    smuggling vector, 6.1 and 11.2); h11 lets Transfer-Encoding win."""
    msg = we_reject(diff, "both Transfer-Encoding and Content-Length")
    return msg is not None and bool(values(msg, b"transfer-encoding")) and msg.length is not None


@allowance
def transfer_encoding_in_http10(diff: Diff) -> bool:
    """RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing; h11
    reads it as chunked."""
    msg = we_reject(diff, "Transfer-Encoding in an HTTP/1.0 message")
    return (
        msg is not None and msg.start[-1] == b"HTTP/1.0" and bool(values(msg, b"transfer-encoding"))
    )


@allowance
def connect_with_content(diff: Diff) -> bool:
    """RFC 9110 9.3.6: a CONNECT request has no content (what follows the head is the
    tunnel), so one that declares a body (even an empty chunked one) is refused; h11 reads
    the body first."""
    msg = we_reject(diff, "CONNECT request with a body")
    framed = bool(msg and (msg.length or values(msg, b"transfer-encoding")))
    return msg is not None and msg.start[0] == b"CONNECT" and framed


@allowance
def content_length_digits(diff: Diff) -> bool:
    """RFC 9110 8.6: a recipient guards against overflow in large Content-Length values;
    mecha answers 413 beyond 18 digits, h11 allows 20."""
    msg = we_reject(diff, "Content-Length too large")
    return msg is not None and msg.length is not None and msg.length >= 10**18


@allowance
def chunk_line_grammar(diff: Diff) -> bool:
    """RFC 9112 7.1 / 7.1.1: chunk-size [ chunk-ext ] CRLF with extensions of tokens and
    quoted strings, nothing after them; h11 takes ";" and anything up to the line end, and
    whitespace after the size."""
    msg = we_reject(diff, "malformed chunk size line")
    if msg is None:
        return False
    lines = chunk_lines(chunked_body(diff, msg))[0]
    return any(CHUNK_LINE.fullmatch(line) is None for line in lines)


@allowance
def unasked_bytes(diff: Diff) -> bool:
    """RFC 9112 9.3.2: responses answer requests in order, so bytes after the answer to the
    last request cannot be a response; mecha fails the connection (502), h11's driver has
    stopped reading."""
    return (
        diff.kind == "ours_rejects"
        and diff.theirs is None
        and not diff.their_error
        and bool(diff.rest.replace(b"\r\n", b""))
    )


# -- mecha takes what h11 refuses


@allowance
def empty_lines_before_start_line(diff: Diff) -> Verdict:
    """RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request-line
    (clients that send CRLF after a body); mecha ignores them before a status line too.
    h11 reads on without the empty line."""
    if diff.kind != "theirs_rejects" or diff.their_error not in (
        "no request line received",
        "no response line received",
    ):
        return False
    at = diff.failed_at
    assert diff.data[at - 2 : at] == b"\r\n"
    return diff.data[: at - 2] + diff.data[at:], 0


@allowance
def carriage_return_at_close(diff: Diff) -> bool:
    """RFC 9112 2.2 again: a CR at the end of the input may have been the start of an empty
    line, so mecha closes without an error (there is no message either way); h11 calls it
    an invalid start line."""
    return (
        diff.kind == "theirs_rejects"
        and diff.ours is None
        and not diff.our_error
        and diff.rest == b"\r"
    )


@allowance
def chunk_extension_whitespace(diff: Diff) -> Verdict:
    """RFC 9112 7.1.1 allows BWS around ";" and "=" in chunk extensions; h11 follows
    RFC 7230, which did not. h11 reads on with that chunk line without the whitespace."""
    if diff.kind != "theirs_rejects" or not diff.their_error.startswith("illegal chunk header"):
        return False
    end = diff.failed_at - 2
    start = diff.data.rfind(b"\n", 0, end) + 1
    line = diff.data[start:end]
    if CHUNK_LINE.fullmatch(line) is None or not re.search(rb"[ \t]", line):
        return False
    line = re.sub(rb"[ \t]*([;=])[ \t]*", rb"\1", line)
    return diff.data[:start] + line + diff.data[end:], 0


@allowance
def framing_fields_in_trailers(diff: Diff) -> bool:
    """RFC 9112 7.1.2 and RFC 9110 6.5.1: trailer fields cannot frame the message, so mecha
    leaves their values alone; h11 checks Content-Length and Transfer-Encoding there as in
    a head."""
    if diff.kind != "theirs_rejects" or diff.ours is None:
        return False
    framing = {k for k, _ in diff.ours.trailers} & {b"content-length", b"transfer-encoding"}
    return bool(framing) and any(
        s in diff.their_error for s in ("Content-Length", "Transfer-Encoding")
    )


@allowance
def framing_fields_without_content(diff: Diff) -> bool:
    """RFC 9112 6.3 (1) and (2): a response to HEAD or CONNECT (2xx), and a 1xx, 204 or 304
    response, ends with its head whatever the header fields say; mecha does not judge a
    Transfer-Encoding it will not use. h11 checks it as if it framed a body."""
    msg = diff.ours
    if diff.kind != "theirs_rejects" or msg is None or not values(msg, b"transfer-encoding"):
        return False
    status = msg.start[0]
    return isinstance(status, int) and (
        status < 200 or status in (204, 304) or msg.asked == b"HEAD"
        or (msg.asked == b"CONNECT" and status < 300)
    )  # fmt: skip


# -- both accept, with different meanings


@allowance
def http10_keep_alive(diff: Diff) -> Verdict:
    """RFC 9112 9.3 and Appendix C.2.2: an HTTP/1.0 peer that sends "Connection: keep-alive"
    keeps the connection; h11 closes every HTTP/1.0 connection. h11 reads what follows as a
    new connection."""
    ours, theirs = diff.ours, diff.theirs
    if diff.kind != "differ" or ours is None or theirs is None:
        return False
    tokens = {t.strip().lower() for v in values(ours, b"connection") for t in v.split(b",")}
    if (
        ours != Msg(**{**vars(theirs), "keep_alive": True})
        or ours.start[-1] != b"HTTP/1.0"
        or b"keep-alive" not in tokens
    ):
        return False
    return diff.data[theirs.span[2] :], diff.index + 1


# -- tests -----------------------------------------------------------------------------------


@st.composite
def request_input(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    data = draw(maybe_mutated(draw(pipelined_requests())))
    return data, draw(split_strategy(data))


@st.composite
def response_input(draw: st.DrawFn) -> tuple[list[Asked], bytes, list[bytes]]:
    asked, data = draw(pipelined_responses())
    data = draw(maybe_mutated(data))
    return asked, data, draw(split_strategy(data))


def halves(data: bytes) -> list[bytes]:
    return [data[: len(data) // 2], data[len(data) // 2 :]]


def given_case(data: bytes) -> tuple[bytes, list[bytes]]:
    return data, halves(data)


@PROFILE
@given(request_input())
@example(given_case(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"))
@example(
    given_case(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3 ; x = y\r\nabc\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n"
    )
)
@example(
    given_case(
        b"GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
    )
)
@example(
    given_case(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"
    )
)
@example(given_case(b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n"))
@example(given_case(b"GET / HTTP/1.1\nHost: a\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"))
@example(given_case(b"GET http://u@h/ HTTP/1.1\r\nHost: a\r\n\r\n"))
@example(given_case(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n"))
@example(given_case(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\r\n\r"))
def test_requests_like_h11(case: tuple[bytes, list[bytes]]) -> None:
    data, chunks = case
    ours = ours_serve(one_by_one(data))
    check_coarser_cut(ours, ours_serve([data]))
    check_coarser_cut(ours, ours_serve(chunks))
    theirs = theirs_serve([data])
    check_same_split(theirs, theirs_serve(chunks))
    compare(data, ours, theirs, lambda other, _: theirs_serve([other]))


EXCESS = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhello"
INTERIM = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na\r\n"


@PROFILE
@given(response_input())
@example(([Asked()], *given_case(EXCESS)))
@example(([Asked(b"CONNECT")], *given_case(b"HTTP/1.1 204 No Content\r\n\r\n\x16\x03")))
@example(([Asked(b"POST"), Asked()], *given_case(INTERIM + b"HTTP/1.0 200 OK\r\n\r\nbody")))
@example(([Asked(b"HEAD")], *given_case(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n")))
@example(
    (
        [Asked(), Asked()],
        *given_case(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
            b"Content-Length: 0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
        ),
    )
)
def test_responses_like_h11(case: tuple[list[Asked], bytes, list[bytes]]) -> None:
    asked, data, chunks = case
    ours = ours_fetch(asked, one_by_one(data))
    check_coarser_cut(ours, ours_fetch(asked, [data]))
    check_coarser_cut(ours, ours_fetch(asked, chunks))
    theirs = theirs_fetch(asked, [data])
    check_same_split(theirs, theirs_fetch(asked, chunks))
    answered = lambda msgs: sum(not informational(m.start[0]) for m in msgs)  # noqa: E731
    compare(data, ours, theirs, lambda other, msgs: theirs_fetch(asked[answered(msgs) :], [other]))


def test_a_difference_no_allowance_explains_fails() -> None:
    data = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
    ours, theirs = ours_serve([data]), theirs_serve([data])
    compare(data, ours, theirs, lambda other, _: theirs_serve([other]))
    ours.messages[0].body = b"abd"
    with pytest.raises(AssertionError, match="differ at message 0"):
        compare(data, ours, theirs, lambda other, _: theirs_serve([other]))
    # an allowance needs its evidence in the input, not only mecha's reason
    refused = Outcome(error="505 unsupported HTTP version")
    with pytest.raises(AssertionError, match="ours_rejects at message 0"):
        compare(data, refused, theirs, lambda other, _: theirs_serve([other]))
