# syntax=docker/dockerfile:1
# The ampx worker: one attempt of one AmpTask per Job (`ampx worker --task NAME --attempt N -n NS`).
# It clones with git, runs the `amp` CLI, commits and pushes. Build from the repository root:
#   docker build -f images/worker.Dockerfile -t ampx-worker:0.1.0 .
# linux/amd64 only: @ampcode/cli publishes no linux-arm64 binary at the pinned version.
# No secret is baked in: AMP_API_KEY and the GitHub App key come from Secrets the Job references.
# Repositories that need a toolchain for their tests extend this image (FROM ampx-worker, USER root,
# install, USER 10001).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:22-bookworm-slim

# --- amp: the pinned @ampcode/cli from npm -------------------------------------------------------
# The npm package is a wrapper whose postinstall links in a self-contained native binary from the
# platform package @ampcode/cli-linux-x64; we take that binary (checked against its sha256), so
# the runtime image needs no Node.js. The newest @ampcode/cli may lack the linux-x64 package: pin
# a version for which `npm view @ampcode/cli-linux-x64 versions` lists it.
FROM ${NODE_IMAGE} AS amp
ARG AMP_CLI_VERSION=0.0.1790142911-g7618fb
ARG AMP_CLI_SHA256=3b8a5fc578cc20d4adb7bd77effe09e2aae11d6761c3698b8e740388deb42542
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN test "$(uname -m)" = x86_64 \
    || { echo "@ampcode/cli@${AMP_CLI_VERSION} has no binary for $(uname -m); build with --platform linux/amd64" >&2; exit 1; }
RUN npm install --global --prefix /opt/amp --ignore-scripts --no-fund --no-audit \
        "@ampcode/cli@${AMP_CLI_VERSION}" \
 && install -D -m 0755 \
        /opt/amp/lib/node_modules/@ampcode/cli/node_modules/@ampcode/cli-linux-x64/amp /out/amp \
 && echo "${AMP_CLI_SHA256}  /out/amp" | sha256sum -c - \
 && HOME=/tmp /out/amp --version

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
LABEL org.opencontainers.image.title="ampx-worker" \
      org.opencontainers.image.description="ampx worker: git + the amp CLI + ampx, one task attempt per Job"
# Debian's package versions are pinned by the base image tag (the archive drops old versions).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install --yes --no-install-recommends git ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 ampx \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/ampx --create-home \
        --shell /bin/bash ampx \
 && install -d -o 10001 -g 10001 -m 0750 /workspace
COPY --from=amp /out/amp /usr/local/bin/amp
COPY --from=build /opt/ampx /opt/ampx
ENV PATH=/opt/ampx/bin:$PATH \
    HOME=/home/ampx \
    SHELL=/bin/bash \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /workspace
ENTRYPOINT ["ampx"]
CMD ["worker", "--help"]
