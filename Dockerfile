# azdo-exporter container image.
#
# Offline build (what scripts/build-image.sh does): a Debian base image with python3 built locally from
# Debian's packages, and the dependencies as wheels prepared on the host in build/wheelhouse:
#   .venv/bin/pip wheel -w build/wheelhouse '.[web,entra]' setuptools wheel
#   podman build --format docker --build-arg BASE_IMAGE=localhost/azdo-base:bookworm -t azdo-exporter .
# BASE_IMAGE is any Debian-like image with python3 (3.11 or later) and its venv module.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

# --- builder: builds the exporter's wheel from this source and installs it with its dependencies into a
# virtual environment, from the local wheelhouse only (no network needed).
FROM ${BASE_IMAGE} AS builder
WORKDIR /src
COPY build/wheelhouse/ /wheelhouse/
COPY pyproject.toml README.md ./
COPY exporter/ exporter/
RUN python3 -m venv /opt/azdo-exporter \
    && /opt/azdo-exporter/bin/pip install --no-cache-dir --no-index --find-links /wheelhouse ".[web,entra]" \
    && /opt/azdo-exporter/bin/pip uninstall --yes pip \
    && /opt/azdo-exporter/bin/azdo-exporter --version

# --- final: the virtual environment on a clean base, run as a non-root user.
FROM ${BASE_IMAGE}
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="azdo-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Azure DevOps delivery-pipeline health: broken builds, tests, reviews, audit, deployments and DORA." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.vendor="azdo-exporter" \
      org.opencontainers.image.documentation="docs/deployment.md" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
RUN groupadd --gid 10001 azdo \
    && useradd --uid 10001 --gid azdo --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin azdo
COPY --from=builder /opt/azdo-exporter /opt/azdo-exporter
ENV PATH=/opt/azdo-exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 9862
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/opt/azdo-exporter/bin/python", "-m", "exporter.serve.healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["azdo-exporter"]
