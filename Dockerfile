# fakesvc: one image for the supervisor (the default), any single service, the sink and the traffic generator.
#   docker build -t fakesvc:local .
#   docker run --rm -p 8003:8003 fakesvc:local                        # everything in one process
#   docker run --rm fakesvc:local python -m fakesvc.payment             # one service (see compose.yaml)
# Build and run steps, compose and Kubernetes: docs/deploy.md.

# A Python patch release on a named Debian release, so a rebuild gets the same Python; add a digest
# (python:3.11.14-slim-bookworm@sha256:...) where builds must be byte-for-byte repeatable.
# --build-arg PYTHON_IMAGE=... swaps in another Debian-based Python 3.11 (deploy/smoke.sh builds a local
# stand-in from Debian's packages when Docker Hub cannot be reached); only python3 is assumed of it.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
FROM ${PYTHON_IMAGE} AS base

# Build stage: pip and the source tree stay here; only the finished virtual environment moves on.
FROM base AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# python3, not python: Debian's python3 package has no `python`; the venv brings its own python for the rest.
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY setup.cfg pyproject.toml README.md LICENSE ./
COPY fakesvc ./fakesvc
RUN /opt/venv/bin/pip install ".[fast,otlp]"

# Final stage: the slim base, the virtual environment and supervisor.py; no compiler, no pip cache, no source.
FROM base
LABEL org.opencontainers.image.title="fakesvc" \
      org.opencontainers.image.description="Fake checkout microservices that inject failures and emit telemetry" \
      org.opencontainers.image.licenses="MIT"
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home fakesvc \
    && mkdir -p /data \
    && chown fakesvc:fakesvc /data
COPY --from=build /opt/venv /opt/venv
COPY supervisor.py /app/supervisor.py
# Services bind every address (a container's loopback is its own); the outbox, the sink's database and
# the truth live under /data, the one writable place (mount a volume there to keep them).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FAKESVC_HOST=0.0.0.0 \
    FAKESVC_SINK_HOST=0.0.0.0 \
    FAKESVC_SPILL_DIR=/data/outbox \
    FAKESVC_SINK_DB=/data/signals.db
WORKDIR /data
USER 10001:10001
EXPOSE 8000 8002 8003 8004
# The probe reads the container's command (/proc/1/cmdline) and the same settings as that command:
# /readyz of each service it runs, /ingest/health for the sink, nothing for the traffic generator.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-m", "fakesvc.healthcheck"]
CMD ["python", "/app/supervisor.py"]
