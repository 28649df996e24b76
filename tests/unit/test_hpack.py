"""mecha's HPACK (protocols/http/hpack.py): RFC 7541 Appendix C, bounds, caches, and a
differential test against the `hpack` package (the same blocks give the same header lists
and fail on the same blocks), plus a fuzz of the decoder.

A few hundred examples each by default; `MECHA_FUZZ=deep` runs thousands.
"""

from __future__ import annotations

import os

import hpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.http.hpack import (
    STATIC_TABLE,
    Decoder,
    Encoder,
    Field,
    HeaderListTooLarge,
    HpackError,
    encode_int,
)
from protocols.http.hpack_huffman import huffman_decode, huffman_encode, huffman_length

DEEP = os.environ.get("MECHA_FUZZ") == "deep"
FUZZ = settings(
    max_examples=5000 if DEEP else 300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def octets(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def table(decoder: Decoder) -> list[tuple[bytes, bytes, int]]:
    return [(n, v, len(n) + len(v) + 32) for n, v in decoder._table.entries]


# -- RFC 7541 Appendix C ----------------------------------------------------------------------

REQ_1 = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
         (b":authority", b"www.example.com")]  # fmt: skip
REQ_2 = [*REQ_1, (b"cache-control", b"no-cache")]
REQ_3 = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/index.html"),
         (b":authority", b"www.example.com"), (b"custom-key", b"custom-value")]  # fmt: skip
REQ_TABLES = [
    [(b":authority", b"www.example.com", 57)],
    [(b"cache-control", b"no-cache", 53), (b":authority", b"www.example.com", 57)],
    [(b"custom-key", b"custom-value", 54), (b"cache-control", b"no-cache", 53),
     (b":authority", b"www.example.com", 57)],
]  # fmt: skip
DATE_1, DATE_2 = b"Mon, 21 Oct 2013 20:13:21 GMT", b"Mon, 21 Oct 2013 20:13:22 GMT"
COOKIE = b"foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
URL = b"https://www.example.com"
RESP_1 = [(b":status", b"302"), (b"cache-control", b"private"), (b"date", DATE_1),
          (b"location", URL)]  # fmt: skip
RESP_2 = [(b":status", b"307"), *RESP_1[1:]]
RESP_3 = [(b":status", b"200"), (b"cache-control", b"private"), (b"date", DATE_2),
          (b"location", URL), (b"content-encoding", b"gzip"), (b"set-cookie", COOKIE)]  # fmt: skip
RESP_TABLES = [
    [(b"location", URL, 63), (b"date", DATE_1, 65), (b"cache-control", b"private", 52),
     (b":status", b"302", 42)],
    [(b":status", b"307", 42), (b"location", URL, 63), (b"date", DATE_1, 65),
     (b"cache-control", b"private", 52)],
    [(b"set-cookie", COOKIE, 98), (b"content-encoding", b"gzip", 52), (b"date", DATE_2, 65)],
]  # fmt: skip
CHAINS = {
    "C.3": (4096, [
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ], [REQ_1, REQ_2, REQ_3], REQ_TABLES),
    "C.4": (4096, [
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        "8286 84be 5886 a8eb 1064 9cbf",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ], [REQ_1, REQ_2, REQ_3], REQ_TABLES),
    "C.5": (256, [
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133"
        "2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70"
        "6c65 2e63 6f6d",
        "4803 3330 37c1 c0bf",
        "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d"
        "54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049"
        "5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e"
        "3d31",
    ], [RESP_1, RESP_2, RESP_3], RESP_TABLES),
    "C.6": (256, [
        "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6"
        "2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        "4883 640e ffc1 c0bf",
        "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab"
        "77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f"
        "9587 3160 65c0 03ed 4ee5 b106 3d50 07",
    ], [RESP_1, RESP_2, RESP_3], RESP_TABLES),
}  # fmt: skip
SINGLE = {
    "C.2.1": ("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
              (b"custom-key", b"custom-header"), [(b"custom-key", b"custom-header", 55)]),
    "C.2.2": ("040c 2f73 616d 706c 652f 7061 7468", (b":path", b"/sample/path"), []),
    "C.2.3": ("1008 7061 7373 776f 7264 0673 6563 7265 74", (b"password", b"secret"), []),
    "C.2.4": ("82", (b":method", b"GET"), []),
}  # fmt: skip


@pytest.mark.parametrize("label", sorted(SINGLE))
def test_appendix_c2_each_representation(label: str) -> None:
    block, field, after = SINGLE[label]
    decoder = Decoder()
    assert decoder.decode(octets(block)) == [field]
    assert table(decoder) == after


@pytest.mark.parametrize("label", sorted(CHAINS))
def test_appendix_c_chains_on_one_table(label: str) -> None:
    size, blocks, lists, tables = CHAINS[label]
    decoder = Decoder(table_size=size)
    for block, expected, after in zip(blocks, lists, tables, strict=True):
        assert decoder.decode(octets(block)) == expected
        assert table(decoder) == after
        assert decoder._table.size == sum(entry[2] for entry in after)


def test_appendix_c4_is_what_the_encoder_writes() -> None:
    """Requests index :authority and new fields and Huffman-code every literal (shorter)."""
    encoder = Encoder()
    _size, blocks, lists, _tables = CHAINS["C.4"]
    for block, headers in zip(blocks, lists, strict=True):
        assert encoder.encode(headers) == octets(block)


def test_appendix_c6_responses_round_trip_with_eviction() -> None:
    encoder, decoder = Encoder(), Decoder(table_size=256)
    encoder.header_table_size = 256
    for headers in (RESP_1, RESP_2, RESP_3, RESP_1):
        assert decoder.decode(encoder.encode(headers)) == headers
    assert decoder._table.size <= 256


def test_static_table_is_rfc_7541_appendix_a() -> None:
    assert len(STATIC_TABLE) == 61
    assert STATIC_TABLE[0] == (b":authority", b"")
    assert STATIC_TABLE[15] == (b"accept-encoding", b"gzip, deflate")
    assert STATIC_TABLE[60] == (b"www-authenticate", b"")


# -- errors and bounds ------------------------------------------------------------------------

BAD_BLOCKS = {
    "index 0": "80",
    "index past the table": "be",
    "size update above the advertised": "3fe21f",
    "truncated string": "400a6375",
    "truncated literal": "41",
    "truncated integer": "ff",
    "integer of too many bytes": "ff ffffffffffff7f",
    "update after a field": "82 20",
    "EOS in a Huffman string": "0085 ffffffffff",
    "padding of eight bits": "0082 1fff",
    "padding not all ones": "0081 00",
}


@pytest.mark.parametrize("label", sorted(BAD_BLOCKS))
def test_bad_blocks_raise_hpack_error(label: str) -> None:
    with pytest.raises(HpackError):
        Decoder().decode(octets(BAD_BLOCKS[label]))


def test_hpack_bomb_stops_at_the_header_list_bound() -> None:
    """One 4 KB entry referenced again and again: refused at the bound, not decoded."""
    value = b"v" * 4000
    insert = bytes((0x40,)) + encode_int(1, 7, 0) + b"x" + encode_int(len(value), 7, 0) + value
    block = insert + b"\xbe" * 10_000
    decoder = Decoder(max_header_list_size=16384)
    with pytest.raises(HeaderListTooLarge) as caught:
        decoder.decode(block)
    assert caught.value.status == 431


def test_a_string_longer_than_the_bound_is_refused_before_it_is_decoded() -> None:
    block = b"\x00" + encode_int(5, 7, 0) + b"abcde" + encode_int(70000, 7, 0x80) + b"\xff" * 70000
    with pytest.raises(HeaderListTooLarge):
        Decoder(max_header_list_size=65536).decode(block)


def test_the_peer_must_shrink_the_table_after_we_lower_the_ceiling() -> None:
    decoder = Decoder()
    decoder.decode(octets(CHAINS["C.3"][1][0]))
    decoder.max_allowed_table_size = 0
    with pytest.raises(HpackError):
        decoder.decode(b"\x82")
    fresh = Decoder()
    fresh.decode(octets(CHAINS["C.3"][1][0]))
    fresh.max_allowed_table_size = 0
    assert fresh.decode(b"\x20\x82") == [(b":method", b"GET")]
    assert table(fresh) == []


# -- caches ----------------------------------------------------------------------------------


def test_a_repeated_block_is_decoded_once_while_the_table_is_unchanged() -> None:
    decoder = Decoder()
    blocks = [octets(block) for block in CHAINS["C.3"][1]]
    decoder.decode(blocks[0])
    second = octets("8286 84be")  # only references: leaves the table as it was
    first = decoder.decode(second)
    assert decoder.decode(second) is first
    decoder.decode(blocks[1])  # inserts: index 62 now means another field
    assert decoder.decode(second)[3] == (b"cache-control", b"no-cache")


def test_a_repeated_header_list_is_encoded_once_while_the_table_is_unchanged() -> None:
    encoder, decoder = Encoder(), Decoder()
    headers = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"x-id", b"1")]
    first = encoder.encode(headers)
    second = encoder.encode(headers)
    assert second != first  # the first inserted; the second only refers
    assert encoder.encode(headers) is second
    for block in (first, second, second):
        assert decoder.decode(block) == headers
    encoder.header_table_size = 0  # a resize must be announced, not answered from the cache
    third = encoder.encode(headers)
    assert third[0] == 0x20
    assert decoder.decode(third) == headers


def test_credentials_are_never_indexed() -> None:
    encoder = Encoder()
    block = encoder.encode([(b"authorization", b"Bearer secret-token"), (b"cookie", b"a=1")])
    assert block[0] & 0xF0 == 0x10
    assert encoder._table.entries == type(encoder._table.entries)()


# -- Huffman ---------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=200))
def test_huffman_round_trip(data: bytes) -> None:
    coded = huffman_encode(data)
    assert len(coded) == huffman_length(data)
    assert huffman_decode(coded) == data
    assert hpack.huffman_table.decode_huffman(coded) == data


# -- differential against the hpack package --------------------------------------------------

NAMES = [b":method", b":path", b":status", b"content-type", b"x-a", b"x-b", b"cookie",
         b"authorization", b"date", b"content-length"]  # fmt: skip
VALUES = [b"", b"GET", b"/", b"200", b"v"]
fields = st.tuples(
    st.sampled_from(NAMES) | st.binary(min_size=1, max_size=12),
    st.sampled_from(VALUES) | st.binary(max_size=300),
)
header_lists = st.lists(fields, max_size=8)
steps = st.lists(
    st.tuples(header_lists, st.booleans(), st.sampled_from([None, None, None, 0, 64, 256, 4096])),
    min_size=1,
    max_size=12,
)


def _plain(headers: object) -> list[Field]:
    return [(bytes(n), bytes(v)) for n, v in headers]  # type: ignore[attr-defined]


@FUZZ
@given(steps, st.data())
def test_decoder_agrees_with_hpack_on_valid_blocks(
    script: list[tuple[list[Field], bool, int | None]], data: st.DataObject
) -> None:
    """Blocks from hpack's encoder (Huffman or not, resizes, repeats): the same lists."""
    theirs_enc, theirs_dec, ours = hpack.Encoder(), hpack.Decoder(), Decoder()
    for headers, huffman, resize in script:
        if resize is not None:
            theirs_enc.header_table_size = resize
        repeats = data.draw(st.integers(1, 3))
        for _ in range(repeats):  # a repeated list exercises the decoded-block cache
            block = theirs_enc.encode(headers, huffman=huffman)
            assert ours.decode(block) == _plain(theirs_dec.decode(block, raw=True)) == headers


@FUZZ
@given(steps)
def test_encoder_output_is_what_hpack_decodes(
    script: list[tuple[list[Field], bool, int | None]],
) -> None:
    encoder, theirs = Encoder(), hpack.Decoder()
    for headers, _huffman, resize in script:
        if resize is not None:
            encoder.header_table_size = resize
        for _ in range(2):
            assert _plain(theirs.decode(encoder.encode(headers), raw=True)) == headers


def _outcome(decoder: Decoder | hpack.Decoder, block: bytes) -> list[Field] | None:
    try:
        if isinstance(decoder, Decoder):
            return decoder.decode(block)
        return _plain(decoder.decode(block, raw=True))
    except HpackError:
        return None
    except hpack.HPACKError:
        return None


CHUNKS = [octets(block) for _, blocks, _, _ in CHAINS.values() for block in blocks]


@FUZZ
@given(st.lists(st.binary(max_size=40) | st.sampled_from(CHUNKS), min_size=1, max_size=6))
def test_decoder_fails_where_hpack_fails(blocks: list[bytes]) -> None:
    """Arbitrary and mutated blocks in a row: both decode the same list or both refuse it
    (after which the connection is gone, so the row stops)."""
    ours, theirs = Decoder(max_header_list_size=4096), hpack.Decoder(4096)
    for block in blocks:
        mine = _outcome(ours, block)
        assert mine == _outcome(theirs, block)
        if mine is None:
            return


@FUZZ
@given(st.binary(max_size=2000))
def test_any_bytes_decode_or_raise_hpack_error(block: bytes) -> None:
    decoder = Decoder(max_header_list_size=1024)
    try:
        result = decoder.decode(block)
    except HpackError:
        return
    assert sum(len(n) + len(v) + 32 for n, v in result) <= 1024
