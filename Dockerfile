# azdo-exporter container image. Two ways to build it, both from a plain clone:
#
#   docker build .            (or podman build .) — the dependencies come from the package index;
#                             PIP_INDEX_URL / PIP_EXTRA_INDEX_URL build arguments point pip at a mirror,
#                             and --secret id=ca_bundle,src=ca.pem trusts a TLS-inspecting proxy's CA.
#   Offline, with wheels prepared on the host in build/wheelhouse (what scripts/build-image.sh does):
#     .venv/bin/pip wheel -w build/wheelhouse '.[web,entra]' setuptools wheel
#     podman build --network none --build-arg BASE_IMAGE=localhost/azdo-base:bookworm-python3 .
#   When build/wheelhouse holds wheels, pip installs from it alone (--no-index); otherwise from the index.
# BASE_IMAGE is any Debian-like image with python3 (3.11 or later) and its venv module.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

# --- builder: builds the exporter's wheel from this source and installs it with its dependencies into a
# virtual environment: from build/wheelhouse when it holds wheels (no network needed), else from the index.
FROM ${BASE_IMAGE} AS builder
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
WORKDIR /src
# "wheelhous[e]" matches nothing in a plain clone, so the COPY works with or without a wheelhouse;
# README.md is listed so the instruction always has a source (pip ignores it in --find-links).
COPY README.md build/wheelhous[e] /wheelhouse/
COPY pyproject.toml README.md ./
COPY exporter/ exporter/
# A TLS-inspecting proxy's CA, if pip needs one: --secret id=ca_bundle,src=/path/to/ca.pem (never stored
# in the image).
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
    && python3 -m venv /opt/azdo-exporter \
    && if ls /wheelhouse/*.whl >/dev/null 2>&1; then \
         echo "installing from the wheelhouse, offline"; \
         /opt/azdo-exporter/bin/pip install --no-cache-dir --no-index --find-links /wheelhouse ".[web,entra]"; \
       else \
         echo "installing from the package index"; \
         /opt/azdo-exporter/bin/pip install --no-cache-dir ".[web,entra]"; \
       fi \
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
