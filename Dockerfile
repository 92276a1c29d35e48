# The operator's image: `docker build -t <registry>/fmesh-events:<tag> .` (docs/deploy.md).
# Runs `fmesh-events run` as uid 10001 on a read-only root filesystem (deploy/deployment.yaml
# mounts an emptyDir at /tmp).
FROM python:3.11-slim-bookworm

# No .pyc writes (the root filesystem is read-only at run time), logs straight to stdout;
# pip quiet about running as root and about its own version (build time only).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# A fixed uid, so the Deployment's runAsUser and runAsNonRoot can check it; --no-log-init
# keeps a high uid from growing a large sparse /var/log/lastlog.
RUN groupadd --gid 10001 fmesh \
 && useradd --no-log-init --uid 10001 --gid 10001 --home-dir /home/fmesh --create-home \
        --shell /usr/sbin/nologin fmesh

WORKDIR /src

# Dependencies first, from the lock only: this layer is rebuilt when the pins change, not
# on every source change. Every pinned package ships a manylinux wheel for amd64 and arm64,
# so no compiler is needed.
COPY deploy/requirements.lock deploy/requirements.lock
RUN pip install --no-cache-dir -r deploy/requirements.lock

# The project itself, without resolving anything again (--no-deps): the lock is the whole
# dependency set. README.md is read by the build (pyproject's readme).
COPY pyproject.toml README.md ./
COPY fmesh_events ./fmesh_events
RUN pip install --no-cache-dir --no-deps . \
 && rm -rf /src

WORKDIR /home/fmesh
USER 10001:10001

# /metrics, /healthz, /readyz (FMESH_HTTP_PORT, 8081 by default).
EXPOSE 8081

ENTRYPOINT ["fmesh-events"]
CMD ["run"]
