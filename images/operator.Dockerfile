# syntax=docker/dockerfile:1
# The ampx operator (kopf). Build from the repository root:
#   docker build -f images/operator.Dockerfile -t ampx-operator:0.1.0 .
# No secret is baked in: the GitHub App key is mounted from a Secret at run time (see the chart).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the ampx package and its dependencies in a virtual environment -------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/ampx
COPY pyproject.toml README.md /src/
COPY ampx /src/ampx
RUN /opt/ampx/bin/pip install /src \
 && /opt/ampx/bin/ampx --help >/dev/null

# --- runtime -----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="ampx-operator" \
      org.opencontainers.image.description="ampx operator: runs AmpTasks as Kubernetes Jobs until CI is green"
ENV PATH=/opt/ampx/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 ampx \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/ampx --create-home \
        --shell /usr/sbin/nologin ampx \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/ampx
COPY --from=build /opt/ampx /opt/ampx
USER 10001:10001
WORKDIR /home/ampx
# kopf's liveness endpoint (the chart's livenessProbe).
EXPOSE 8080
ENTRYPOINT ["ampx"]
CMD ["operator", "--liveness", "http://0.0.0.0:8080/healthz"]
