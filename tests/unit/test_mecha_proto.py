"""mecha's generated gRPC code is what scripts/gen-protos.sh makes from proto/ today."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gen-protos.sh"
GENERATED = ROOT / "filters" / "http" / "runtime_grpc"


def pinned_tools() -> str:
    found = re.search(r"^GRPCIO_TOOLS=(\S+)", SCRIPT.read_text(), re.MULTILINE)
    assert found, "scripts/gen-protos.sh pins GRPCIO_TOOLS"
    return found.group(1)


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    try:
        installed = importlib.metadata.version("grpcio-tools")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("grpcio-tools is not installed (the test extra pins it)")
    if installed != pinned_tools():
        pytest.skip(f"grpcio-tools {installed} is not the pinned {pinned_tools()}")
    env = {**os.environ, "PYTHON": sys.executable}  # the interpreter running the tests
    subprocess.run([str(SCRIPT), str(tmp_path)], cwd=ROOT, env=env, check=True, timeout=120)
    for name in ("mecha_pb2.py", "mecha_pb2.pyi"):
        fresh = (tmp_path / name).read_text()
        committed = (GENERATED / name).read_text()
        assert fresh == committed, f"{name} is stale: run scripts/gen-protos.sh"


def test_the_service_answers_what_the_proto_declares() -> None:
    from filters.http.runtime_grpc import mecha_pb2
    from filters.http.runtime_grpc.services import METHODS

    service = mecha_pb2.DESCRIPTOR.services_by_name["Mecha"]
    for method in service.methods:
        path = f"/mecha.runtime.v1.Mecha/{method.name}".encode()
        assert path in METHODS, path
        assert METHODS[path].request.DESCRIPTOR is method.input_type
