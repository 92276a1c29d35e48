# A local stand-in for python:3.11-slim-bookworm (the operator Dockerfile's base) when no
# registry can be pulled from: Debian bookworm's Python 3.11 with pip, on our debootstrap base.
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-pip python-is-python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 # pip installs into the image's own Python, as in the python images (no PEP 668 marker).
 && rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED
