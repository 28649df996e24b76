"""wrk as a load generator that runs while a test does something else, and what it reports."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class WrkReport:
    output: str
    requests: int
    socket_errors: dict[str, int]
    """connect / read / write / timeout, all 0 when wrk printed no "Socket errors" line."""
    not_2xx_3xx: int

    def assert_clean(self) -> None:
        assert self.requests > 0, self.output
        assert not any(self.socket_errors.values()), self.output
        assert self.not_2xx_3xx == 0, self.output


class Wrk:
    """`wrk -c{connections} -d{seconds}s URL`, started at once; `report()` waits for it."""

    def __init__(self, url: str, connections: int = 50, seconds: float = 3.0) -> None:
        # (a long --timeout: on a busy machine a slow answer is not the error these tests seek)
        argv = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", url]
        self._seconds = seconds
        self._process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)

    def report(self) -> WrkReport:
        try:
            output, _ = self._process.communicate(timeout=self._seconds + 15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.communicate()
            raise
        return parse(output)


def parse(output: str) -> WrkReport:
    requests = re.search(r"(\d+) requests in", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       output)  # fmt: skip
    counts = [int(value) for value in errors.groups()] if errors else [0, 0, 0, 0]
    not_ok = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkReport(
        output=output,
        requests=int(requests.group(1)) if requests else 0,
        socket_errors=dict(zip(("connect", "read", "write", "timeout"), counts, strict=True)),
        not_2xx_3xx=int(not_ok.group(1)) if not_ok else 0,
    )
