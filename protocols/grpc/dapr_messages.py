"""Dapr's generated message classes, without the grpcio runtime behind its stubs.

`dapr.proto` and `dapr.proto.runtime.v1` import grpcio's client and server stubs in their
`__init__`: a second gRPC runtime (about 16 MiB resident) in a process that serves gRPC on
its own HTTP/2 stack and needs only the `*_pb2` message modules. The command line calls
`use_bare_packages()` before anything imports them, so those packages are registered bare
and `from dapr.proto.runtime.v1 import state_pb2` loads the messages alone. Libraries and
tests that want the SDK's stubs import the packages as usual.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

PACKAGES = (
    "dapr.proto",
    "dapr.proto.common",
    "dapr.proto.common.v1",
    "dapr.proto.runtime",
    "dapr.proto.runtime.v1",
)


def use_bare_packages() -> bool:
    """Register the packages bare; False when they were imported already (or no dapr)."""
    if any(name in sys.modules for name in PACKAGES):
        return False
    spec = importlib.util.find_spec("dapr")
    if spec is None or not spec.submodule_search_locations:
        return False
    root = Path(next(iter(spec.submodule_search_locations)))
    for name in PACKAGES:
        package = types.ModuleType(name)
        package.__path__ = [str(root.joinpath(*name.split(".")[1:]))]
        package.__package__ = name
        sys.modules[name] = package
    return True
