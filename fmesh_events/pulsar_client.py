"""The one Pulsar client setup: the binary-protocol client and the admin REST calls share
the same URLs, token and TLS settings."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pulsar
import urllib3

from fmesh_events.settings import Settings


class PulsarAdminError(RuntimeError):
    """An admin call failed; carries the HTTP status and the broker's reason."""

    def __init__(self, method: str, path: str, status: int, reason: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {reason}")
        self.status = status


def connect(settings: Settings, **options: Any) -> pulsar.Client:
    """A Pulsar client with the settings' auth and TLS; `options` go to pulsar.Client."""
    kwargs: dict[str, Any] = {"operation_timeout_seconds": 30, "logger": _quiet_logger()}
    if settings.pulsar_auth_token is not None:
        kwargs["authentication"] = pulsar.AuthenticationToken(
            settings.pulsar_auth_token.get_secret_value()
        )
    if settings.pulsar_tls_trust_certs_file is not None:
        kwargs["tls_trust_certs_file_path"] = str(settings.pulsar_tls_trust_certs_file)
    if settings.pulsar_tls_cert_file is not None and settings.pulsar_tls_key_file is not None:
        kwargs["authentication"] = pulsar.AuthenticationTLS(
            str(settings.pulsar_tls_cert_file), str(settings.pulsar_tls_key_file)
        )
    if settings.pulsar_service_url.startswith("pulsar+ssl://"):
        kwargs["tls_allow_insecure_connection"] = settings.pulsar_tls_allow_insecure
        kwargs["tls_validate_hostname"] = settings.pulsar_tls_hostname_verification
    kwargs.update(options)
    return pulsar.Client(aliased(settings.pulsar_service_url, settings.pulsar_host_aliases), **kwargs)


def aliased(url: str, aliases: dict[str, str]) -> str:
    """`url` with its host replaced by the address `aliases` gives for it, port and path kept.

    Both client and admin URLs go through here, so an operator outside the cluster reaches a
    pulsarConfig's `pulsar-broker.pulsar.svc.cluster.local` the way pods do."""
    parts = urlsplit(url)
    address = aliases.get(parts.hostname or "")
    if address is None:
        return url
    netloc = address if parts.port is None else f"{address}:{parts.port}"
    if parts.username is not None or parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)[0] + "@" + netloc
    return urlunsplit(parts._replace(netloc=netloc))


def _quiet_logger() -> Any:
    # The C++ client logs every producer and consumer at INFO to stdout; keep it to warnings.
    return pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn)


class PulsarAdmin:
    """The few admin REST v2 calls the operator makes, with the client's auth and TLS."""

    def __init__(self, settings: Settings) -> None:
        self.base = aliased(settings.pulsar_admin_url, settings.pulsar_host_aliases).rstrip("/")
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if settings.pulsar_auth_token is not None:
            self.headers["Authorization"] = f"Bearer {settings.pulsar_auth_token.get_secret_value()}"
        # The sampler reads stats from several threads: one kept connection each (urllib3
        # keeps one per host by default and opens, then drops, a new one for the others).
        pool: dict[str, Any] = {"timeout": urllib3.Timeout(connect=5, read=30), "retries": False,
                                "maxsize": 8}
        if settings.pulsar_tls_trust_certs_file is not None:
            pool["ca_certs"] = str(settings.pulsar_tls_trust_certs_file)
        if settings.pulsar_tls_cert_file is not None and settings.pulsar_tls_key_file is not None:
            pool["cert_file"] = str(settings.pulsar_tls_cert_file)
            pool["key_file"] = str(settings.pulsar_tls_key_file)
        if settings.pulsar_tls_allow_insecure:
            pool["cert_reqs"] = "CERT_NONE"
        self.http = urllib3.PoolManager(**pool)

    def request(self, method: str, path: str, body: Any = None,
                ok: tuple[int, ...] = (200, 204)) -> Any:
        data = None if body is None else json.dumps(body).encode()
        response = self.http.request(method, self.base + path, body=data, headers=self.headers)
        if response.status not in ok:
            reason = response.data.decode(errors="replace")[:500]
            raise PulsarAdminError(method, path, response.status, reason)
        if not response.data:
            return None
        try:
            return json.loads(response.data)
        except ValueError:
            return response.data.decode()

    def clusters(self) -> list[str]:
        result: list[str] = self.request("GET", "/admin/v2/clusters")
        return result

    def ensure_namespace(self, namespace: str, retention_minutes: int = 30 * 24 * 60,
                         retention_size_mb: int = -1) -> bool:
        """Create tenant/namespace if missing, with deduplication and a retention policy.

        Returns True when the namespace was created by this call.
        """
        tenant = namespace.split("/", 1)[0]
        tenants = self.request("GET", "/admin/v2/tenants")
        if tenant not in tenants:
            clusters = self.clusters()
            self.request("PUT", f"/admin/v2/tenants/{tenant}",
                         {"adminRoles": [], "allowedClusters": clusters}, ok=(204, 409))
        created = False
        if namespace not in self.request("GET", f"/admin/v2/namespaces/{tenant}"):
            self.request("PUT", f"/admin/v2/namespaces/{namespace}", ok=(204, 409))
            created = True
        self.request("POST", f"/admin/v2/namespaces/{namespace}/deduplication", True)
        self.request("POST", f"/admin/v2/namespaces/{namespace}/retention",
                     {"retentionTimeInMinutes": retention_minutes,
                      "retentionSizeInMB": retention_size_mb})
        return created
