"""The one Kubernetes client setup: kubeconfig when given, in-cluster when inside a pod,
else the usual $KUBECONFIG / ~/.kube/config."""

from __future__ import annotations

import os

from kubernetes import client, config

from fmesh_events.settings import Settings

# Reconcile workers and the sampler's threads share one client: a pool smaller than the
# number of threads would queue their requests behind each other.
CONNECTION_POOL_SIZE = 64


def api_client(settings: Settings) -> client.ApiClient:
    configuration = client.Configuration()
    if settings.kubeconfig is not None:
        config.load_kube_config(config_file=str(settings.kubeconfig), context=settings.kube_context,
                                client_configuration=configuration)
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        config.load_kube_config(context=settings.kube_context, client_configuration=configuration)
    configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
    return client.ApiClient(configuration)
