"""`mecha run --app-id ... --resources-path ... -- python3 app.py`, as Dapr's docs start apps
with `dapr run`: apps written with the official Python SDK as its examples are, each beside
its own mecha; two apps publish and subscribe, and call each other by app id."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tests.support.dapr_run import APPS, dapr_run, mecha_cli, running
from tests.support.net import free_port
from tests.support.redis import redis_server

pytestmark = pytest.mark.e2e

PYTHON = sys.executable
"""The python3 the SDK is installed for."""


def component(name: str, kind: str, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    items = [{"name": key, "value": value} for key, value in (metadata or {}).items()]
    return {"apiVersion": "dapr.io/v1alpha1", "kind": "Component", "metadata": {"name": name},
            "spec": {"type": kind, "version": "v1", "metadata": items}}  # fmt: skip


def components(workdir: Path, *documents: dict[str, Any]) -> str:
    folder = workdir / "components"
    folder.mkdir(exist_ok=True)
    for document in documents:
        (folder / f"{document['metadata']['name']}.yaml").write_text(yaml.safe_dump(document))
    return str(folder)


def listed(workdir: Path) -> dict[str, dict[str, Any]]:
    result = mecha_cli(workdir, "list", "--output", "json")
    assert result.returncode == 0, result.stderr
    return {entry["appId"]: entry for entry in json.loads(result.stdout)}


def test_state_app(tmp_path: Path) -> None:
    folder = components(tmp_path, component("statestore", "state.in-memory"))
    result = dapr_run(tmp_path, "--app-id", "state-app", "--resources-path", folder,
                      "--", PYTHON, str(APPS / "state.py"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "== APP == Result after get: b'250'\n" in result.stdout
    assert "== APP == Result after delete: b''\n" in result.stdout
    assert "the app exited with status 0" in result.stderr


def test_mecha_exits_with_the_apps_status_and_says_so(tmp_path: Path) -> None:
    script = tmp_path / "fails.py"
    script.write_text("import sys\nprint('giving up', file=sys.stderr)\nsys.exit(7)\n")
    result = dapr_run(tmp_path, "--app-id", "fails", "--", PYTHON, str(script))
    assert result.returncode == 7
    assert "== APP == giving up\n" in result.stdout
    assert "the app exited with status 7" in result.stderr


def test_an_app_that_cannot_start_is_named(tmp_path: Path) -> None:
    result = dapr_run(tmp_path, "--app-id", "ghost", "--", str(tmp_path / "no-such-app"))
    assert result.returncode == 127
    assert f"the app cannot start: {tmp_path / 'no-such-app'}" in result.stderr


def test_bad_flags_and_files_are_named(tmp_path: Path) -> None:
    result = dapr_run(tmp_path, "--app-id", "a", "--app-port", "70000", "--", "true")
    assert result.returncode == 1
    assert "--app-port: 70000: expected a port (0-65535)" in result.stderr
    config = tmp_path / "config.yaml"
    spec = {"appHttpPipeline": {"handlers": [{"name": "up", "type": "middleware.http.uppercase"}]}}
    configuration = {"apiVersion": "dapr.io/v1alpha1", "kind": "Configuration", "spec": spec}
    config.write_text(yaml.safe_dump(configuration))
    result = dapr_run(tmp_path, "--app-id", "a", "--config", str(config), "--", "true")
    assert result.returncode == 1
    assert f"{config}: spec.appHttpPipeline: middleware pipelines are not supported" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_pubsub_between_a_publisher_and_a_subscriber(tmp_path: Path) -> None:
    with redis_server(tmp_path) as redis_port:
        pubsub = component("pubsub", "pubsub.redis", {"redisHost": f"127.0.0.1:{redis_port}"})
        folder = components(tmp_path, pubsub)
        app_port = free_port()
        with running(tmp_path, "subscriber", "--app-id", "order-processor", "--app-port",
                     str(app_port), "--app-protocol", "grpc", "--resources-path", folder, "--",
                     PYTHON, str(APPS / "subscriber.py")) as subscriber:  # fmt: skip
            subscriber.wait_for("subscribed to pubsub/orders", in_logs=True)
            assert listed(tmp_path)["order-processor"]["appPort"] == app_port
            publisher = dapr_run(tmp_path, "--app-id", "checkout", "--resources-path", folder,
                                 "--", PYTHON, str(APPS / "publisher.py"))  # fmt: skip
            assert publisher.returncode == 0, publisher.stderr
            assert publisher.stdout.count('== APP == Published data: {"orderId"') == 3
            subscriber.wait_for("== APP == Subscriber received: orderId=3")
            for order in (1, 2, 3):
                assert f"== APP == Subscriber received: orderId={order}\n" in subscriber.output()
            stopped = mecha_cli(tmp_path, "stop", "--app-id", "order-processor")
            assert stopped.returncode == 0, stopped.stderr
            assert subscriber.process.wait(timeout=20) != 0  # the app was stopped by SIGTERM
            assert "SIGTERM: passed on to the app" in subscriber.logs()
    assert "order-processor" not in listed(tmp_path)


def test_invoke_another_app_by_its_id(tmp_path: Path) -> None:
    app_port = free_port()
    with running(tmp_path, "receiver", "--app-id", "invoke-receiver", "--app-port",
                 str(app_port), "--app-protocol", "grpc", "--",
                 PYTHON, str(APPS / "receiver.py")) as receiver:  # fmt: skip
        receiver.wait_for("app is up on port", in_logs=True)
        caller = dapr_run(tmp_path, "--app-id", "checkout", "--", PYTHON, str(APPS / "caller.py"))
        assert caller.returncode == 0, caller.stderr
        assert "== APP == Answer: INVOKE_RECEIVED (200)\n" in caller.stdout
        receiver.wait_for("== APP == my-method called by 'checkout' with "
                          '{"id": 1, "message": "hello world"}')  # fmt: skip


def test_a_crashed_run_is_not_listed_nor_called(tmp_path: Path) -> None:
    app_port = free_port()
    with running(tmp_path, "receiver", "--app-id", "invoke-receiver", "--app-port",
                 str(app_port), "--app-protocol", "grpc", "--",
                 PYTHON, str(APPS / "receiver.py")) as receiver:  # fmt: skip
        receiver.wait_for("app is up on port", in_logs=True)
        assert "invoke-receiver" in listed(tmp_path)
        receiver.process.kill()  # no chance to leave the registry
        receiver.process.wait()
        deadline = time.monotonic() + 10
        while "invoke-receiver" in listed(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "invoke-receiver" not in listed(tmp_path)
        app = int(receiver.logs().split("receiver.py (pid ")[1].split(")")[0])
        deadline = time.monotonic() + 10
        while _alive(app) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(app)  # the app does not outlive its killed sidecar
        caller = dapr_run(tmp_path, "--app-id", "checkout", "--", PYTHON, str(APPS / "caller.py"))
        assert caller.returncode != 0
        assert "invoke-receiver" in caller.stdout  # the SDK's error names the app id


def test_a_configurations_api_lists_bind_the_app(tmp_path: Path) -> None:
    """The state API over gRPC is denied: the SDK's calls are refused, and say why."""
    folder = components(tmp_path, component("statestore", "state.in-memory"))
    config = tmp_path / "config.yaml"
    spec = {"api": {"denied": [{"name": "state", "version": "v1", "protocol": "grpc"}]}}
    configuration = {"apiVersion": "dapr.io/v1alpha1", "kind": "Configuration", "spec": spec}
    config.write_text(yaml.safe_dump(configuration))
    result = dapr_run(tmp_path, "--app-id", "state-app", "--resources-path", folder,
                      "--config", str(config), "--", PYTHON, str(APPS / "state.py"))  # fmt: skip
    assert result.returncode == 1, result.stdout
    assert "PERMISSION_DENIED" in result.stdout
    assert "API state v1 is not allowed for this app" in result.stdout


def test_secrets_locks_and_bindings(tmp_path: Path) -> None:
    """Secret scopes from the Configuration, a lock store, a Redis output binding."""
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"db-password": "s3cret", "admin-password": "root"}))
    config = tmp_path / "config.yaml"
    scopes = [{"storeName": "localsecretstore", "defaultAccess": "deny",
               "allowedSecrets": ["db-password"]}]  # fmt: skip
    config.write_text(yaml.safe_dump({"apiVersion": "dapr.io/v1alpha1", "kind": "Configuration",
                                      "spec": {"secrets": {"scopes": scopes}}}))  # fmt: skip
    with redis_server(tmp_path) as redis_port:
        folder = components(
            tmp_path,
            component("localsecretstore", "secretstores.local.file",
                      {"secretsFile": str(secrets)}),
            component("lockstore", "lock.in-memory"),
            component("orders-cache", "bindings.redis", {"redisHost": f"127.0.0.1:{redis_port}"}),
        )  # fmt: skip
        result = dapr_run(tmp_path, "--app-id", "blocks", "--resources-path", folder, "--config",
                          str(config), "--", PYTHON, str(APPS / "blocks.py"))  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        for line in ("Secret: {'db-password': 's3cret'}", "Denied: PERMISSION_DENIED",
                     "Lock acquired: True", "Lock taken by another: True", "Unlock: success",
                     "Binding invoked"):  # fmt: skip
            assert f"== APP == {line}\n" in result.stdout, result.stdout
        assert redis.Redis(port=redis_port).get("order-1") == b"shipped"


def test_an_http_pipeline_rate_limits_the_api(tmp_path: Path) -> None:
    """Dapr's middleware.http.ratelimit, named by the Configuration's httpPipeline: 429 past
    maxRequestsPerSecond."""
    limit = component("limit", "middleware.http.ratelimit", {"maxRequestsPerSecond": "3"})
    folder = components(tmp_path, limit)
    config = tmp_path / "config.yaml"
    spec = {"httpPipeline": {"handlers": [{"name": "limit", "type": "middleware.http.ratelimit"}]}}
    configuration = {"apiVersion": "dapr.io/v1alpha1", "kind": "Configuration", "spec": spec}
    config.write_text(yaml.safe_dump(configuration))
    port = free_port()
    with running(tmp_path, "limited", "--app-id", "limited", "--dapr-http-port", str(port),
                 "--resources-path", folder, "--config", str(config)) as sidecar:  # fmt: skip
        sidecar.wait_for("listening on 127.0.0.1:", in_logs=True)
        statuses = []
        for _ in range(6):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1.0/metadata") as answer:
                    statuses.append(answer.status)
            except urllib.error.HTTPError as error:
                statuses.append(error.code)
        assert statuses.count(200) <= 3 and 429 in statuses, statuses


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def publish(port: int, order: int) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1.0/publish/pubsub/orders",
                                     data=json.dumps({"orderId": order}).encode(),
                                     headers={"content-type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request) as answer:
        assert answer.status == 204


def test_deliveries_stop_while_the_app_is_unhealthy(tmp_path: Path) -> None:
    """Dapr's app health check: failing probes stop the subscriptions; once the app is
    healthy again, what was published meanwhile is delivered."""
    sick = tmp_path / "sick"
    app_port, http_port = free_port(), free_port()
    with redis_server(tmp_path) as redis_port:
        pubsub = component("pubsub", "pubsub.redis", {"redisHost": f"127.0.0.1:{redis_port}"})
        folder = components(tmp_path, pubsub)
        with running(tmp_path, "health", "--app-id", "health", "--app-port", str(app_port),
                     "--dapr-http-port", str(http_port), "--resources-path", folder,
                     "--enable-app-health-check", "--app-health-probe-interval", "1",
                     "--app-health-threshold", "1", "--", PYTHON, str(APPS / "health_app.py"),
                     env={"SICK_FILE": str(sick)}) as app:  # fmt: skip
            app.wait_for("subscribed to pubsub/orders", in_logs=True)
            publish(http_port, 1)
            app.wait_for("== APP == Subscriber received: orderId=1")
            sick.touch()
            app.wait_for("app is unhealthy", in_logs=True)
            publish(http_port, 2)
            time.sleep(1.5)
            assert "orderId=2" not in app.output()
            sick.unlink()
            app.wait_for("app is healthy again", in_logs=True)
            app.wait_for("== APP == Subscriber received: orderId=2")


def test_an_app_that_ignores_signals_is_killed_at_the_third(tmp_path: Path) -> None:
    script = tmp_path / "stubborn.py"
    script.write_text("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                      "print('ready', flush=True)\ntime.sleep(60)\n")  # fmt: skip
    with running(tmp_path, "stubborn", "--app-id", "stubborn", "--", PYTHON, str(script)) as run:
        run.wait_for("== APP == ready")
        for _ in range(3):
            run.process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
        assert run.process.wait(timeout=10) == 128 + signal.SIGKILL
        assert "SIGKILL: passed on to the app" in run.logs()


def test_a_taken_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = dapr_run(tmp_path, "--app-id", "a", "--dapr-http-port", str(port), "--", "true")
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port} for listener 'runtime-http'" in result.stderr
    assert "== APP ==" not in result.stdout  # the app is not started


def test_a_process_the_app_leaves_behind_does_not_hold_mecha(tmp_path: Path) -> None:
    """The app exits; a child it started keeps its output open: mecha exits all the same."""
    script = tmp_path / "leaves.py"
    script.write_text("import subprocess\n"
                      "print('left', subprocess.Popen(['sleep', '30']).pid)\n")  # fmt: skip
    started = time.monotonic()
    result = dapr_run(tmp_path, "--app-id", "leaves", "--", PYTHON, str(script))
    elapsed = time.monotonic() - started
    left = int(result.stdout.split("== APP == left ")[1].split()[0])
    os.kill(left, signal.SIGKILL)
    assert result.returncode == 0
    assert elapsed < 20


def test_the_callees_access_control_decides(tmp_path: Path) -> None:
    """The callee's Configuration denies `checkout` everything but POST my-method: the SDK's
    call (POST) passes; from another app id it is refused by the callee's sidecar."""
    config = tmp_path / "config.yaml"
    allow = {"name": "/my-method", "httpVerb": ["POST"], "action": "allow"}
    policy = {"appId": "checkout", "defaultAction": "deny", "operations": [allow]}
    spec = {"accessControl": {"defaultAction": "deny", "policies": [policy]}}
    config.write_text(yaml.safe_dump({"apiVersion": "dapr.io/v1alpha1", "kind": "Configuration",
                                      "spec": spec}))  # fmt: skip
    app_port = free_port()
    with running(tmp_path, "receiver", "--app-id", "invoke-receiver", "--app-port",
                 str(app_port), "--app-protocol", "grpc", "--config", str(config), "--",
                 PYTHON, str(APPS / "receiver.py")) as receiver:  # fmt: skip
        receiver.wait_for("app is up on port", in_logs=True)
        allowed = dapr_run(tmp_path, "--app-id", "checkout", "--", PYTHON, str(APPS / "caller.py"))
        assert "== APP == Answer: INVOKE_RECEIVED (200)\n" in allowed.stdout, allowed.stderr
        denied = dapr_run(tmp_path, "--app-id", "intruder", "--", PYTHON, str(APPS / "caller.py"))
        assert denied.returncode != 0
        assert "access control policy has denied access to id: intruder" in denied.stdout
        assert "called by 'intruder'" not in receiver.output()
