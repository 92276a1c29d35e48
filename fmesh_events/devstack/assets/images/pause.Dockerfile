# The pod sandbox image (registry.k8s.io/pause on the node's registry).
FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
