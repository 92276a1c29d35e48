"""fmesh-events: Pulsar Functions, Sources and Sinks on Kubernetes, driven by events on Pulsar."""

__version__ = "0.1.0"
