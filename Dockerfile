# gagiteck-gateway container image.
#   docker build -t gagiteck-gateway:0.1.0 .
#   docker run -p 50051:50051 -e GATEWAY_UPSTREAM_URL=https://api.mimoai.co gagiteck-gateway:0.1.0
# Without GATEWAY_UPSTREAM_URL the image serves the embedded emulator (demo mode).
# deploy/ runs it on Kubernetes; `make image-check` runs this file's install steps and
# HEALTHCHECK outside Docker.

# Python 3.11.16 on Debian bookworm, pinned by digest: the multi-platform index of
# python:3.11.16-slim-bookworm as the Docker Official Images' records (docker-library/
# repo-info) give it for the build of 2026-09-01. The tag says what it is, the digest which
# bytes; both stages below start from this one line. To move to a newer build or patch
# release, read the new index digest with
#   docker buildx imagetools inspect python:3.11.N-slim-bookworm     (its first "Digest:")
# and replace the tag and the digest here.
FROM python:3.11.16-slim-bookworm@sha256:c425d915a89a6dcd3183b1797ad9bd8878caff5a417f6371c8df93c8ea8b727f AS base

FROM base AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_NO_INPUT=1
RUN python -m venv /opt/gateway
# The dependencies first, in a layer of their own that changes only with the lock. Every
# distribution is checked against its hash in requirements.lock, which pins the whole
# closure of pyproject's dependencies and the speed extra, and the build backend
# (`make lock` refreshes it): nothing is resolved here.
COPY requirements.lock /tmp/requirements.lock
RUN /opt/gateway/bin/pip install --require-hashes --no-deps -r /tmp/requirements.lock
# Then the gateway itself, built by the locked setuptools: no resolution, no download.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY generated/python ./generated/python
RUN /opt/gateway/bin/pip install --no-deps --no-build-isolation . \
 && /opt/gateway/bin/pip check

FROM base
# A numeric user and group, so that Kubernetes can check runAsNonRoot without reading
# the image's /etc/passwd; deploy/ runs the pod as the same uid and gid.
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin gateway
COPY --from=build /opt/gateway /opt/gateway
ENV PATH=/opt/gateway/bin:$PATH \
    GATEWAY_LISTEN=0.0.0.0:50051 \
    GATEWAY_ADMIN_LISTEN=0.0.0.0:9464 \
    GATEWAY_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
# 50051: gRPC; 9464: /healthz, /readyz, /metrics and the webhook receiver
EXPOSE 50051 9464
# `health` reads the settings `serve` reads: gRPC health on GATEWAY_LISTEN wherever it
# points, or /readyz on GATEWAY_ADMIN_LISTEN when the gRPC port speaks TLS. Exits 1 while
# the gateway drains.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["gagiteck-gateway", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["gagiteck-gateway"]
CMD ["serve"]
