# The operator's image: `DOCKER_BUILDKIT=1 docker build -t <registry>/fmesh-events:<tag> .`
# (docs/deploy.md; `fmesh-events dev image` builds it for the dev stack's real node).
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
# A build behind a TLS-inspecting proxy passes its CA bundle as the optional BuildKit secret
# `pip-cert` (`docker build --secret id=pip-cert,src=/etc/ssl/certs/ca-certificates.crt`):
# pip trusts it for this step only and it never lands in a layer.
COPY deploy/requirements.lock deploy/requirements.lock
RUN --mount=type=secret,id=pip-cert,required=false \
    if [ -s /run/secrets/pip-cert ]; then export PIP_CERT=/run/secrets/pip-cert; fi \
 && pip install --no-cache-dir -r deploy/requirements.lock

# The project itself, without resolving anything again (--no-deps): the lock is the whole
# dependency set. README.md is read by the build (pyproject's readme).
COPY pyproject.toml README.md ./
COPY fmesh_events ./fmesh_events
# (The build backend, setuptools, is fetched for an isolated build: the same secret applies.)
RUN --mount=type=secret,id=pip-cert,required=false \
    if [ -s /run/secrets/pip-cert ]; then export PIP_CERT=/run/secrets/pip-cert; fi \
 && pip install --no-cache-dir --no-deps . \
 && rm -rf /src

WORKDIR /home/fmesh
USER 10001:10001

# /metrics, /healthz, /readyz (FMESH_HTTP_PORT, 8081 by default).
EXPOSE 8081

ENTRYPOINT ["fmesh-events"]
CMD ["run"]
