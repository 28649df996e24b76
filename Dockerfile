# mecha's images, from the committed lock (every package pinned and hash-checked):
#
#   docker build -t mecha .                      the sidecar: small, non-root (uid 1337)
#   docker build --target init -t mecha-init .   the init container: `mecha iptables --apply`
#
# iptables is in the init image only: the sidecar has no tool to change the pod's network.
# The compiled twins of hot-path modules are not built here: their pure-Python modules serve.

FROM python:3.12-slim AS build
WORKDIR /src
COPY requirements/run.lock requirements/run.lock
RUN python -m venv /opt/mecha \
 && /opt/mecha/bin/pip install --no-cache-dir --require-hashes --no-deps -r requirements/run.lock
COPY pyproject.toml README.md ./
COPY configs configs
COPY filters filters
COPY protocols protocols
COPY proxy proxy
COPY runtime runtime
RUN /opt/mecha/bin/pip install --no-cache-dir --no-deps --no-build-isolation . \
 && /opt/mecha/bin/pip uninstall --yes pip setuptools

FROM python:3.12-slim AS init
COPY --from=build /opt/mecha /opt/mecha
ENV PATH=/opt/mecha/bin:$PATH
RUN apt-get update \
 && apt-get install --yes --no-install-recommends iptables \
 && rm -rf /var/lib/apt/lists/*
# Root, with NET_ADMIN and NET_RAW given by the pod: changing nat rules needs both.
ENTRYPOINT ["mecha", "iptables", "--apply"]

FROM python:3.12-slim AS mecha
COPY --from=build /opt/mecha /opt/mecha
ENV PATH=/opt/mecha/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN groupadd --gid 1337 mecha \
 && useradd --uid 1337 --gid 1337 --no-create-home --shell /usr/sbin/nologin mecha
USER 1337:1337
# Dapr's HTTP and gRPC API ports, and the health listener the kubelet probes.
EXPOSE 3500 50001 15021
ENTRYPOINT ["mecha"]
CMD ["run"]
