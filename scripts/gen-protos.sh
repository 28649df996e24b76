#!/usr/bin/env bash
# Regenerates mecha's own gRPC message code from proto/ with pinned tools, so that the
# committed files are what these exact versions produce (tests/unit/test_mecha_proto.py
# regenerates into a temporary directory and compares).
#   scripts/gen-protos.sh          write into filters/http/runtime_grpc/
#   scripts/gen-protos.sh DIR      write into DIR instead
set -euo pipefail
cd "$(dirname "$0")/.."

GRPCIO_TOOLS=1.85.1   # bundles protoc 35.1: the generated code needs protobuf >= 7.35.1
python=${PYTHON:-.venv/bin/python}
out=${1:-filters/http/runtime_grpc}

installed=$("$python" -c 'import importlib.metadata as m; print(m.version("grpcio-tools"))' \
  2>/dev/null || true)
if [ "$installed" != "$GRPCIO_TOOLS" ]; then  # the test lock pins both (tests/unit/test_setup.py)
  "$python" -m pip install -q --require-hashes --no-deps -r requirements/test.lock
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" -m grpc_tools.protoc -I proto --python_out="$tmp" --pyi_out="$tmp" \
  proto/mecha/runtime/v1/mecha.proto
mkdir -p "$out"
cp "$tmp/mecha/runtime/v1/mecha_pb2.py" "$tmp/mecha/runtime/v1/mecha_pb2.pyi" "$out/"
