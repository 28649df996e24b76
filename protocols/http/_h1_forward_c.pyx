# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled twin of `h1_forward.read_request` / `read_response`: the same answers (a
differential test holds them to it), in one pass over the head's bytes instead of a regex
match, a search and a dozen Python objects. Built by scripts/build-native; without it the
pure-Python functions serve."""

from libc.string cimport memcmp

from protocols.http.h1_forward import (
    REQUEST_DECLINED,
    REQUEST_FIELDS,
    RESPONSE_CUT,
    RESPONSE_DECLINED,
    RequestHead,
    ResponseHead,
    keep_alive_of,
)
from protocols.http.h1_parse import _GOOD_HOSTS, MAX_LENGTH_DIGITS, MAX_LINE, good_host

cdef unsigned char TCHAR[256]
cdef unsigned char VCHAR[256]  # a field value's bytes: HTAB, SP..~, obs-text
cdef int _i
for _i in range(256):
    TCHAR[_i] = 0
    VCHAR[_i] = 1 if (_i == 9 or 0x20 <= _i <= 0x7E or _i >= 0x80) else 0
for _i in b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz":
    TCHAR[_i] = 1

# The field names each reader looks for, in a table compared in place (no name object is
# made for the lines it skips): requests' declined names first, then the names it reads.
cdef tuple _REQUEST_NAMES = tuple(sorted(REQUEST_DECLINED)) + tuple(sorted(REQUEST_FIELDS))
cdef Py_ssize_t _REQUEST_FIRST_READ = len(REQUEST_DECLINED)
cdef tuple _RESPONSE_NAMES = (b"content-length",) + tuple(sorted(RESPONSE_DECLINED)) + tuple(
    sorted(RESPONSE_CUT))
cdef Py_ssize_t _RESPONSE_FIRST_CUT = 1 + len(RESPONSE_DECLINED)
cdef tuple _KEEP_ALIVE_VALUES = (b"keep-alive",)
cdef tuple _CLOSE_VALUES = (b"close",)


cdef inline Py_ssize_t _name_index(const unsigned char* p, Py_ssize_t start, Py_ssize_t n,
                                   tuple names):
    """Index of the (lowercase) name that p[start:start+n] spells in any letter case, or -1.
    (A field name is a token, so OR-ing 0x20 folds case without false matches against
    names made of lowercase letters and '-'.)"""
    cdef Py_ssize_t k, index
    cdef bytes name
    cdef const unsigned char* q
    for index in range(len(names)):
        name = <bytes>names[index]
        if len(name) != n:
            continue
        q = name
        for k in range(n):
            if (p[start + k] | 0x20) != q[k]:
                break
        else:
            return index
    return -1


cdef inline Py_ssize_t _field(const unsigned char* p, Py_ssize_t i, Py_ssize_t stop,
                              Py_ssize_t* colon, Py_ssize_t* value, Py_ssize_t* value_end):
    """Validate the field line at i (token ':' value CRLF, all before stop): the index after
    its CRLF, or -1. Sets the colon's index and the value's bounds without OWS."""
    cdef Py_ssize_t j = i, cr
    while j < stop and TCHAR[p[j]]:
        j += 1
    if j == i or j >= stop or p[j] != 58:  # ':'
        return -1
    colon[0] = j
    j += 1
    while j < stop and VCHAR[p[j]]:
        j += 1
    if j + 1 >= stop or p[j] != 13 or p[j + 1] != 10:
        return -1
    cr = j
    j = colon[0] + 1
    while j < cr and (p[j] == 32 or p[j] == 9):
        j += 1
    value[0] = j
    while cr > j and (p[cr - 1] == 32 or p[cr - 1] == 9):
        cr -= 1
    value_end[0] = cr
    return _crlf_after(p, cr) + 2


cdef inline Py_ssize_t _crlf_after(const unsigned char* p, Py_ssize_t j):
    while p[j] != 13:
        j += 1
    return j


cdef inline object _keep_alive(const unsigned char* p, Py_ssize_t start, Py_ssize_t stop):
    """keep_alive_of the Connection value p[start:stop], the two usual values in place."""
    cdef Py_ssize_t n = stop - start
    if _name_index(p, start, n, _KEEP_ALIVE_VALUES) == 0:
        return True
    if _name_index(p, start, n, _CLOSE_VALUES) == 0:
        return False
    return keep_alive_of(p[start:stop].lower())


cdef inline bint _is_digits(bytes value):
    cdef Py_ssize_t n = len(value)
    cdef const unsigned char* p = value
    if n == 0 or n > MAX_LENGTH_DIGITS:
        return False
    for j in range(n):
        if not 48 <= p[j] <= 57:
            return False
    return True


def read_request(bytes buf, Py_ssize_t end, limits):
    cdef const unsigned char* p = buf
    cdef Py_ssize_t stop = end + 2  # the head's last CRLF ends at stop
    cdef Py_ssize_t i = 0, j, line_end, colon = 0, value = 0, value_end = 0, count = 0, index
    if stop > len(buf) or stop < 2:
        return None
    while i < stop and TCHAR[p[i]]:
        i += 1
    if i == 0 or i >= stop or p[i] != 32:
        return None
    method = buf[:i]
    if method == b"CONNECT":
        return None
    j = i + 1
    i = j
    while i < stop and 0x21 <= p[i] <= 0x7E:
        i += 1
    if i == j or i >= stop or p[i] != 32 or p[j] != 47:  # an origin-form target: '/'
        return None
    target = buf[j:i]
    if stop - i < 11 or memcmp(p + i + 1, b"HTTP/1.1\r\n", 10) != 0:
        return None
    line_end = i + 11
    if line_end > MAX_LINE + 2:
        return None
    fields = {}
    i = line_end
    while i < stop:
        j = _field(p, i, stop, &colon, &value, &value_end)
        if j < 0:
            return None
        count += 1
        index = _name_index(p, i, colon - i, _REQUEST_NAMES)
        if index >= 0:
            name = _REQUEST_NAMES[index]
            if index < _REQUEST_FIRST_READ or name in fields:
                return None
            fields[name] = buf[value:value_end]
        i = j
    if i != stop or count > limits.max_headers:
        return None
    host = fields.get(b"host")
    if host is None or (host not in _GOOD_HOSTS and not good_host(host)):
        return None
    length = 0
    cl = fields.get(b"content-length")
    if cl is not None:
        if not _is_digits(cl):
            return None
        length = int(cl)
        if limits.max_body is not None and length > limits.max_body:
            return None
    keep_alive = True
    connection = fields.get(b"connection")
    if connection is not None:
        keep_alive = _keep_alive(connection, 0, len(connection))
        if keep_alive is None:
            return None
    return RequestHead(method, target, buf[:line_end], buf[line_end:stop], fields, length,
                       keep_alive)


def read_response(bytes buf, Py_ssize_t end, limits, bytes method):
    cdef const unsigned char* p = buf
    cdef Py_ssize_t stop = end + 2
    cdef Py_ssize_t i, j, line_end, colon = 0, value = 0, value_end = 0, count = 0, index
    cdef int status
    if stop > len(buf) or stop < 14 or memcmp(p, b"HTTP/1.1 ", 9) != 0:
        return None
    if not (48 <= p[9] <= 57 and 48 <= p[10] <= 57 and 48 <= p[11] <= 57):
        return None
    status = (p[9] - 48) * 100 + (p[10] - 48) * 10 + (p[11] - 48)
    if p[12] == 32:  # a reason phrase
        i = 13
        while i < stop and VCHAR[p[i]]:
            i += 1
    else:
        i = 12
    if i + 1 >= stop or p[i] != 13 or p[i + 1] != 10:
        return None
    line_end = i + 2
    if line_end > MAX_LINE + 2 or status < 200:
        return None
    cdef Py_ssize_t length = -1
    keep_alive = True
    cuts = None
    i = line_end
    while i < stop:
        j = _field(p, i, stop, &colon, &value, &value_end)
        if j < 0:
            return None
        count += 1
        index = _name_index(p, i, colon - i, _RESPONSE_NAMES)
        if index == 0:  # content-length
            cl = buf[value:value_end]
            if length >= 0 or not _is_digits(cl):
                return None
            length = int(cl)
        elif 0 < index < _RESPONSE_FIRST_CUT:
            return None
        elif index > 0:
            if cuts is None:
                cuts = []
            cuts.append((i, j))
            if _RESPONSE_NAMES[index] == b"connection":
                keep = _keep_alive(p, value, value_end)
                if keep is None:
                    return None
                keep_alive = keep_alive and keep
        i = j
    if i != stop or count > limits.max_headers:
        return None
    if method == b"HEAD" or status == 204 or status == 304:
        length = 0
    elif length < 0:
        return None
    elif limits.max_body is not None and length > limits.max_body:
        return None
    if cuts is None:
        head = buf[:stop]
    else:
        parts = []
        i = 0
        for span in cuts:
            parts.append(buf[i:span[0]])
            i = span[1]
        parts.append(buf[i:stop])
        head = b"".join(parts)
    return ResponseHead(status, head, length, keep_alive)
