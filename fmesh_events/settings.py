"""The one settings object, read from flags (the CLI passes them in) and FMESH_* environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_cache_dir() -> Path:
    """Where downloads and builds live: outside the work tree, shared by every checkout."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fmesh-events"


class Settings(BaseSettings):
    """Everything the operator, the CLI and the dev stack are told from outside.

    Each field is read from an `FMESH_<NAME>` environment variable; the CLI's flags
    override the environment.
    """

    model_config = SettingsConfigDict(env_prefix="FMESH_", extra="ignore")

    # Kubernetes
    kubeconfig: Path | None = Field(
        default=None,
        description="Kubeconfig file; unset: in-cluster config, then $KUBECONFIG.",
    )
    kube_context: str | None = Field(default=None, description="Context in the kubeconfig.")
    watch_namespaces: list[str] = Field(
        default_factory=list, description="Namespaces to watch; empty means all."
    )

    # Pulsar
    pulsar_service_url: str = Field(
        default="pulsar://127.0.0.1:6650", description="Binary protocol URL of the Pulsar broker."
    )
    pulsar_admin_url: str = Field(
        default="http://127.0.0.1:8080", description="HTTP URL of the Pulsar admin API."
    )
    pulsar_auth_token: SecretStr | None = Field(
        default=None, description="JWT used by the client and the admin calls."
    )
    pulsar_tls_trust_certs_file: Path | None = Field(
        default=None, description="CA bundle for pulsar+ssl:// and https:// URLs."
    )
    pulsar_tls_cert_file: Path | None = Field(
        default=None, description="Client certificate for mTLS."
    )
    pulsar_tls_key_file: Path | None = Field(default=None, description="Client key for mTLS.")
    pulsar_tls_allow_insecure: bool = Field(
        default=False, description="Accept an untrusted broker certificate (tests only)."
    )
    pulsar_tls_hostname_verification: bool = Field(
        default=True, description="Check the broker certificate's host name."
    )
    pulsar_host_aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Host names in Pulsar URLs to reach at another address, as a Pod's "
                    "hostAliases do (JSON object). For an operator run outside the cluster: "
                    "the cluster-domain names in the functions' pulsarConfig do not resolve "
                    "there; `fmesh-events dev env` prints the dev stack's.",
    )
    system_namespace: str = Field(
        default="public/fmesh-system",
        description="Pulsar tenant/namespace holding the operator's own topics.",
    )

    retention_minutes: int = Field(
        default=30 * 24 * 60,
        description="How long the operator's topics keep messages (the audit trail); 30 days.",
    )

    reconcile_max_attempts: int = Field(
        default=6, description="Reconcile attempts of one change before it is dead-lettered.")

    http_host: str = Field(default="0.0.0.0", description="Address of /metrics, /healthz, /readyz.")
    http_port: int = Field(
        default=8081, ge=0, le=65535,
        description="Port of /metrics, /healthz and /readyz; 0 turns them off.",
    )
    reconcile_workers: int = Field(
        default=32, ge=1, le=256,
        description="Keys reconciled at once by one process (each key stays on one worker).",
    )
    scale_interval_seconds: float = Field(
        default=15.0, gt=0, description="Seconds between two samples of every autoscaled CR."
    )
    scale_probe_rearm_seconds: float = Field(
        default=5.0, gt=0,
        description="Pause before a topic's burst probe listens again after it fired.",
    )
    # Dev stack
    cache_dir: Path = Field(
        default_factory=default_cache_dir,
        description="Downloads and builds of the dev stack (Maven, Go), reused across runs.",
    )
    stack_dir: Path | None = Field(
        default=None, description="State of a running dev stack; default <cache_dir>/stack."
    )
    stack_backend: str = Field(
        default="auto",
        description="Dev stack backend: local (processes), docker (testcontainers) or auto.",
    )
    real_node: bool = Field(
        default=True,
        description="Local dev stack: run a real kubelet node (containerd, CNI, cluster DNS, "
                    "metrics-server, the loopback image registry) beside the KWOK nodes.",
    )

    log_level: str = Field(default="WARNING", description="Log level of the operator.")
    log_format: str = Field(default="json", description="json or text.")

    def topic(self, name: str) -> str:
        """Full name of one of the operator's internal topics."""
        return f"persistent://{self.system_namespace}/{name}"

    @property
    def resolved_stack_dir(self) -> Path:
        return self.stack_dir or self.cache_dir / "stack"
