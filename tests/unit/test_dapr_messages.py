"""Dapr's message classes load without grpcio when the command line asks for bare packages."""

from __future__ import annotations

import subprocess
import sys

from tests.support.mecha import ROOT

BARE = """
import sys
from protocols.grpc import dapr_messages
assert dapr_messages.use_bare_packages()
import filters.http.runtime_grpc.services
from dapr.proto.runtime.v1 import state_pb2
wire = state_pb2.GetStateRequest(store_name="s", key="k").SerializeToString()
assert state_pb2.GetStateRequest.FromString(wire).key == "k"
assert "grpc" not in sys.modules, "grpcio was imported"
assert not dapr_messages.use_bare_packages()  # once only
"""

AS_USUAL = """
from dapr.proto.runtime.v1 import state_pb2
from protocols.grpc import dapr_messages
assert not dapr_messages.use_bare_packages()  # imported the usual way: left alone
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", code]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_the_runtime_grpc_filter_loads_without_grpcio() -> None:
    done = run(BARE)
    assert done.returncode == 0, done.stderr


def test_packages_imported_already_are_left_alone() -> None:
    done = run(AS_USUAL)
    assert done.returncode == 0, done.stderr
