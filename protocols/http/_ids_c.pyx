# cython: language_level=3, boundscheck=False, wraparound=False
"""The compiled twin of `ids.new_ids`: the same two ids from the same 24 random bytes,
formatted in one pass. Built by scripts/build-native."""

from cpython.bytes cimport PyBytes_FromStringAndSize
from random import getrandbits

cdef const char* HEX = b"0123456789abcdef"


cdef inline void _hex(const unsigned char* raw, int start, int stop, char* out) noexcept:
    """Hex digits start..stop of `raw` (as hexlify would number them) into out."""
    cdef int k
    for k in range(start, stop):
        out[k - start] = HEX[(raw[k >> 1] >> 4) & 15] if k % 2 == 0 else HEX[raw[k >> 1] & 15]


def new_ids():
    cdef bytes drawn = getrandbits(192).to_bytes(24, "little")  # (= random.randbytes(24))
    cdef const unsigned char* raw = drawn
    cdef char rid[36]
    cdef char tp[55]
    _hex(raw, 0, 8, rid)
    rid[8] = 45  # '-'
    _hex(raw, 8, 12, rid + 9)
    rid[13] = 45
    rid[14] = 52  # '4': a version 4 UUID
    _hex(raw, 13, 16, rid + 15)
    rid[18] = 45
    rid[19] = 97  # 'a': the RFC 4122 variant
    _hex(raw, 17, 20, rid + 20)
    rid[23] = 45
    _hex(raw, 20, 32, rid + 24)
    tp[0] = 48  # "00-"
    tp[1] = 48
    tp[2] = 45
    _hex(raw, 0, 32, tp + 3)
    tp[35] = 45
    _hex(raw, 32, 48, tp + 36)
    tp[52] = 45  # "-01"
    tp[53] = 48
    tp[54] = 49
    return PyBytes_FromStringAndSize(rid, 36), PyBytes_FromStringAndSize(tp, 55)
