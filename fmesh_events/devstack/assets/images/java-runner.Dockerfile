# The Java runner of the real node, under Function Mesh's runner and sample names: Debian's
# JRE, Pulsar's function instance (/pulsar/instances/java-instance.jar, /pulsar/lib), our
# pulsar-admin and pulsarctl for package downloads, the api-examples jar and test connectors.
# Runs as uid 10000 (gid 10001), as Function Mesh's runner images do.
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        openjdk-17-jre-headless wget ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && groupadd --gid 10001 pulsar \
 && useradd --no-log-init --uid 10000 --gid 10001 --home-dir /pulsar --no-create-home \
        --shell /bin/bash pulsar
COPY --chown=10000:10001 pulsar /pulsar
# The instance writes its log configuration, logs and heap dumps under /pulsar; a pod's
# fsGroup or another uid in group 10001 may run it too.
RUN chmod -R g+w /pulsar/conf /pulsar/logs /pulsar/tmp
WORKDIR /pulsar
USER 10000:10001
