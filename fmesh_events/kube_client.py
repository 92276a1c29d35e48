"""The one Kubernetes client setup: kubeconfig when given, in-cluster when inside a pod,
else the usual $KUBECONFIG / ~/.kube/config."""

from __future__ import annotations

import os

from kubernetes import client, config

from fmesh_events.settings import Settings


def api_client(settings: Settings) -> client.ApiClient:
    if settings.kubeconfig is not None:
        return config.new_client_from_config(
            config_file=str(settings.kubeconfig), context=settings.kube_context
        )
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    return config.new_client_from_config(context=settings.kube_context)
