# healer's image: `docker build -t healer:0.1.0 .` from the repository root.
# Two stages: the build stage makes a virtualenv with healer and its dependencies (and
# the PostgreSQL driver for a shared audit store); the runtime stage copies only that
# virtualenv and the models onto a slim Python, and runs as an unprivileged user with a
# read-only root filesystem (deploy/deployment.yaml), so nothing is written at run time
# except under /tmp and the store's volume.
# The image runs `healer run` only: it installs healer without the `sim` extra, and
# .dockerignore leaves the simulated cluster (healer/sim) and the chaos benchmark
# (healer/chaos) out of the build context, so neither they nor their dependencies ship.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/healer
WORKDIR /src
COPY pyproject.toml README.md ./
COPY healer ./healer
RUN /opt/healer/bin/pip install . "psycopg[binary]>=3.1"

FROM python:3.11-slim AS runtime
# No .pyc files at run time (the root filesystem is read-only); logs unbuffered.
ENV PATH=/opt/healer/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# git: healing through Git (gitops.enabled) clones, commits and pushes with the CLI.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --gid 10001 healer \
    && useradd --uid 10001 --gid healer --no-create-home --shell /usr/sbin/nologin healer
COPY --from=build /opt/healer /opt/healer
WORKDIR /app
COPY models ./models
COPY playbooks ./playbooks
USER 10001:10001
EXPOSE 8080
# The manifests give the settings file; without one, defaults and HEALER_* variables.
ENTRYPOINT ["healer"]
CMD ["run"]
