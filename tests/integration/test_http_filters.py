"""Stream filters in a real connection manager: rate limit, fault, CORS, auth, per route."""

from __future__ import annotations

import http.client
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support.http_backend import Backend, http_backend
from tests.support.mecha import Mecha, http_config, run_mecha

pytestmark = pytest.mark.integration


def get(mecha: Mecha, path: str, headers: dict[str, str] | None = None, method: str = "GET"
        ) -> tuple[int, dict[str, str]]:  # fmt: skip
    connection = http.client.HTTPConnection("127.0.0.1", mecha.port("http"), timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


@pytest.fixture
def backend() -> Any:
    with http_backend("app") as server:
        yield server


def test_rate_limit_fault_cors_and_auth_together(tmp_path: Path, backend: Backend) -> None:
    filters: list[dict[str, Any]] = [
        {"name": "cors", "config": {"allow_origin": ["https://app.test"],
                                    "allow_methods": ["GET", "POST"]}},
        {"name": "auth", "config": {"bearer_tokens": ["s3cret"]}},
        {"name": "local_ratelimit",
         "config": {"max_tokens": 3, "tokens_per_fill": 3, "fill_interval": "1h"}},
        {"name": "fault", "config": {"abort": {"http_status": 418, "percentage": 0}}},
        {"name": "router"},
    ]  # fmt: skip
    routes: list[dict[str, Any]] = [
        {"match": {"prefix": "/open"}, "route": {"cluster": "app"},
         "filters": {"auth": False, "local_ratelimit": False}},
        {"match": {"prefix": "/teapot"}, "route": {"cluster": "app"},
         "filters": {"auth": False, "local_ratelimit": False,
                     "fault": {"abort": {"http_status": 418, "percentage": 100}}}},
        {"match": {"prefix": "/"}, "route": {"cluster": "app"}},
    ]  # fmt: skip
    with run_mecha(tmp_path, http_config({"app": [backend.port]}, routes, filters)) as mecha:
        assert get(mecha, "/")[0] == 401
        assert get(mecha, "/", {"authorization": "Bearer wrong"})[0] == 401
        authorized = {"authorization": "Bearer s3cret", "origin": "https://app.test"}
        statuses = Counter(get(mecha, "/", authorized)[0] for _ in range(5))
        assert statuses == {200: 3, 429: 2}
        assert backend.requests[0]["headers"].get("authorization") is None  # stripped
        status, headers = get(mecha, "/open", {"origin": "https://app.test"})
        assert status == 200 and headers["access-control-allow-origin"] == "https://app.test"
        preflight = {"origin": "https://app.test", "access-control-request-method": "POST"}
        status, headers = get(mecha, "/open", preflight, method="OPTIONS")
        assert status == 200 and "POST" in headers["access-control-allow-methods"]
        assert get(mecha, "/teapot")[0] == 418
        flags = [line.split('" ')[1].split()[1] for line in mecha.wait_access_log(10)]
        assert flags.count("UAEX") == 2 and flags.count("RL") == 2 and flags.count("FI") == 1
