#!/usr/bin/env bash
# Prepares this checkout: a .venv with mecha installed in editable mode, every Python
# package at the version the committed lock names (scripts/lock makes the lock).
#   scripts/setup.sh          what running mecha needs (requirements/run.lock)
#   scripts/setup.sh --test   also the test tools (requirements/test.lock) and the Debian
#                             packages the tests start or drive
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package, for everything the test suite starts or drives.
TEST_COMMANDS=(
  redis-server:redis-server
  redis-cli:redis-tools
  redis-benchmark:redis-tools
  mosquitto:mosquitto
  mosquitto_pub:mosquitto-clients
  mosquitto_sub:mosquitto-clients
  nats-server:nats-server
  curl:curl
  h2load:nghttp2-client
  wrk:wrk
  nginx:nginx
  iptables:iptables
  ip6tables:iptables
  ip:iproute2
  nvim:neovim
  nutcracker:nutcracker
)

apt_install_missing() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
}

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: mecha needs Python >= 3.11 (found $("$python" --version 2>&1))" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv

lock=requirements/run.lock
if [ "${1:-}" = "--test" ]; then
  apt_install_missing "${TEST_COMMANDS[@]}"
  lock=requirements/test.lock
fi
# Exact versions from the lock (hashes checked, nothing resolved here), then mecha itself,
# built by the locked setuptools. Reinstall only when the lock or pyproject.toml changed.
stamp=".venv/.installed-$(basename "$lock")"
if [ ! -f "$stamp" ] || [ "$lock" -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --require-hashes --no-deps -r "$lock"
  # (installed as "mecha" before it took its free PyPI name, mecha-sidecar: not twice)
  .venv/bin/python -m pip uninstall -q -y mecha >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
  touch "$stamp"
fi
scripts/build-native  # (only what changed; the pure-Python modules serve without it)
