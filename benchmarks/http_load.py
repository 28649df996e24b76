"""HTTP load generators for scenarios: wrk (HTTP/1.1) and h2load (h2c), with parsed results."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

LOAD_COMMANDS = {"wrk": "wrk", "h2load": "nghttp2-client"}

_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


@dataclass
class LoadResult:
    """Good (2xx/3xx) responses per second, latencies in ms, and every kind of error seen."""

    rps: float
    latency_ms: dict[str, float]
    errors: dict[str, int] = field(default_factory=dict)


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"not a duration: {text!r}")
    return float(match[1]) * _UNITS_MS[match[2]]


def _search(pattern: str, output: str, tool: str) -> re.Match[str]:
    match = re.search(pattern, output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{tool} output lacks {pattern!r}:\n{output}")
    return match


def _run(argv: list[str], timeout: float) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


def wrk(
    port: int, connections: int, seconds: int, path: str = "/", script: Path | None = None,
    scheme: str = "http", headers: dict[str, str] | None = None,
) -> LoadResult:  # fmt: skip
    """`wrk -t1 --latency` keep-alive GETs (or what `script` asks for, e.g. a `post_script`)
    with `headers` added (a Host replaces wrk's); latency keys p50, p90, p99. `scheme` https:
    over TLS (no certificate check)."""
    url = f"{scheme}://127.0.0.1:{port}{path}"
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    for name, value in (headers or {}).items():
        argv[1:1] = ["-H", f"{name}: {value}"]
    if script is not None:
        argv[1:1] = ["-s", str(script)]
    output = _run(argv, timeout=seconds + 60)
    requests = int(_search(r"^\s*(\d+) requests in ", output, "wrk")[1])
    rps = float(_search(r"^Requests/sec:\s*([\d.]+)", output, "wrk")[1])
    latency = {
        f"p{pct}": _ms(_search(rf"^\s*{pct}%\s+(\S+)", output, "wrk")[1]) for pct in (50, 90, 99)
    }
    errors: dict[str, int] = {}
    if non_2xx := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        errors["non-2xx/3xx"] = int(non_2xx[1])
    if sockets := re.search(r"Socket errors: (.*)", output):
        for kind, count in re.findall(r"(\w+) (\d+)", sockets[1]):
            errors[f"socket {kind}"] = int(count)
    good = requests - errors.get("non-2xx/3xx", 0)
    return LoadResult(rps * good / requests if requests else 0.0, latency, _nonzero(errors))


def post_script(path: Path, body: str, content_type: str = "application/json") -> Path:
    """Write a wrk Lua script that makes every request a POST of `body`; returns `path`."""
    level = "="
    while f"]{level}]" in body or body.endswith(f"]{level}"):
        level += "="
    # A long bracket keeps the body verbatim (no escapes), but drops a leading newline.
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = [{level}[\n{body}]{level}]\n"
        f'wrk.headers["Content-Type"] = "{content_type}"\n'
    )
    return path


def h2load(
    port: int, clients: int, streams: int, requests: int, path: str = "/", scheme: str = "http"
) -> LoadResult:
    """`h2load` over h2c with prior knowledge, or over TLS with ALPN h2 (`scheme` https);
    latency keys mean, max (time for request)."""
    argv = ["h2load", f"-c{clients}", f"-m{streams}", "-n", str(requests),
            f"{scheme}://127.0.0.1:{port}{path}"]  # fmt: skip
    output = _run(argv, timeout=600)
    protocol = _search(r"^Application protocol: (\S+)", output, "h2load")[1]
    expected = "h2" if scheme == "https" else "h2c"
    if protocol != expected:
        raise RuntimeError(f"h2load spoke {protocol}, not {expected}:\n{output}")
    rps = float(_search(r"^finished in \S+, ([\d.]+) req/s", output, "h2load")[1])
    counts = _search(
        r"^requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, "
        r"\d+ failed, (\d+) errored, (\d+) timeout",
        output,
        "h2load",
    )
    done, succeeded, errored, timeout = (int(n) for n in counts.groups())
    statuses = _search(r"^status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx", output, "h2load")
    _, maximum, mean = _search(
        r"^time for request:\s+(\S+)\s+(\S+)\s+(\S+)", output, "h2load"
    ).groups()
    errors = {"4xx": int(statuses[1]), "5xx": int(statuses[2]), "stream errors": errored,
              "timeout": timeout, "not done": requests - done}  # fmt: skip
    # h2load's req/s counts every completed stream (4xx/5xx too); keep only the 2xx/3xx ones.
    completed = done - errored
    good = rps * succeeded / completed if completed else 0.0
    return LoadResult(good, {"mean": _ms(mean), "max": _ms(maximum)}, _nonzero(errors))


def _nonzero(errors: dict[str, int]) -> dict[str, int]:
    return {kind: count for kind, count in errors.items() if count}
