"""The one Pulsar client setup: the binary-protocol client and the admin REST calls share
the same URLs, credentials and TLS settings, whether for the operator's own cluster (its
settings) or for the cluster a workload's spec.pulsar names (a `PulsarIdentity`).

`ClusterPool` keeps one client and one admin session per distinct cluster and identity,
reuses the operator's own when a workload's identity is the same, and closes the others when
no workload uses them any more.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pulsar
import urllib3

from fmesh_events.pulsar_identity import PulsarIdentity, aliased, refusal
from fmesh_events.settings import Settings

__all__ = ["ClusterPool", "ClusterSession", "PulsarAdmin", "PulsarAdminError", "aliased",
           "connect", "connect_as", "own_identity", "refusal"]

log = logging.getLogger("fmesh_events.pulsar")

# A workload's cluster may be away: its calls give up sooner than the operator's own, so one
# unreachable cluster does not hold the sampler's threads for long.
CLUSTER_OPERATION_TIMEOUT_SECONDS = 10
OAUTH2_EARLY_REFRESH_SECONDS = 60


class PulsarAdminError(RuntimeError):
    """An admin call failed; carries the HTTP status (0: no HTTP answer) and the reason."""

    def __init__(self, method: str, path: str, status: int, reason: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {reason}" if status else reason)
        self.status = status
        self.reason = reason


def own_identity(settings: Settings) -> PulsarIdentity:
    """The operator's own cluster and credentials (FMESH_PULSAR_*), as an identity."""
    return PulsarIdentity(
        admin_url=settings.pulsar_admin_url, service_url=settings.pulsar_service_url,
        token=settings.pulsar_auth_token,
        tls_trust_certs_path=str(settings.pulsar_tls_trust_certs_file)
        if settings.pulsar_tls_trust_certs_file else None,
        tls_cert_path=str(settings.pulsar_tls_cert_file)
        if settings.pulsar_tls_cert_file and settings.pulsar_tls_key_file else None,
        tls_key_path=str(settings.pulsar_tls_key_file)
        if settings.pulsar_tls_cert_file and settings.pulsar_tls_key_file else None,
        tls_allow_insecure=settings.pulsar_tls_allow_insecure,
        tls_hostname_verification=settings.pulsar_tls_hostname_verification,
    )


class _Files:
    """Secret material the client libraries want as files (a CA bundle, an OAuth2 key file),
    written 0600 into a private directory that goes when the session closes."""

    def __init__(self) -> None:
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def write(self, name: str, text: str) -> str:
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="fmesh-pulsar-")
            os.chmod(self._dir.name, 0o700)
        path = Path(self._dir.name) / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        return str(path)

    def close(self) -> None:
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


def _read_file(path: str, what: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as error:
        raise PulsarAdminError("READ", what, 0, f"{what} {path} is not readable by the "
                                                f"operator ({error.strerror})") from None


def _trust_file(identity: PulsarIdentity, files: _Files) -> str | None:
    if identity.tls_trust_certs is not None:
        return files.write("ca.pem", identity.tls_trust_certs.get_secret_value())
    return identity.tls_trust_certs_path


def _oauth2_key_file(identity: PulsarIdentity) -> str:
    assert identity.oauth2 is not None
    if identity.oauth2.key_file is not None:
        return identity.oauth2.key_file.get_secret_value()
    return _read_file(identity.oauth2.key_path or "", "the OAuth2 key file")


def connect(settings: Settings, **options: Any) -> pulsar.Client:
    """A Pulsar client with the settings' auth and TLS; `options` go to pulsar.Client."""
    return connect_as(own_identity(settings), settings.pulsar_host_aliases, _Files(),
                      **{"operation_timeout_seconds": 30, **options})


def connect_as(identity: PulsarIdentity, aliases: dict[str, str], files: _Files,
               **options: Any) -> pulsar.Client:
    """A Pulsar client to `identity`'s broker with its credentials; `options` go to
    pulsar.Client. Secret material the library wants as files goes into `files`."""
    if not identity.service_url:
        raise PulsarAdminError("CONNECT", "", 0, "the ConfigMap has no brokerServiceURL")
    kwargs: dict[str, Any] = {"operation_timeout_seconds": CLUSTER_OPERATION_TIMEOUT_SECONDS,
                              "logger": _quiet_logger()}
    if identity.token is not None:
        kwargs["authentication"] = pulsar.AuthenticationToken(identity.token.get_secret_value())
    elif identity.token_path is not None:
        kwargs["authentication"] = pulsar.AuthenticationToken(
            _read_file(identity.token_path, "the token file"))
    elif identity.oauth2 is not None:
        o = identity.oauth2
        params = {"type": "client_credentials", "issuer_url": o.issuer_url,
                  "private_key": files.write("oauth2.json", _oauth2_key_file(identity))}
        params.update({k: v for k, v in (("audience", o.audience), ("scope", o.scope)) if v})
        kwargs["authentication"] = pulsar.AuthenticationOauth2(json.dumps(params))
    trust = _trust_file(identity, files)
    if trust is not None:
        kwargs["tls_trust_certs_file_path"] = trust
    if identity.tls_cert_path is not None and identity.tls_key_path is not None:
        kwargs["authentication"] = pulsar.AuthenticationTLS(identity.tls_cert_path,
                                                            identity.tls_key_path)
    if identity.service_url.startswith("pulsar+ssl://"):
        kwargs["tls_allow_insecure_connection"] = identity.tls_allow_insecure
        kwargs["tls_validate_hostname"] = identity.tls_hostname_verification
    kwargs.update(options)
    return pulsar.Client(aliased(identity.service_url, aliases), **kwargs)


def _quiet_logger() -> Any:
    # The C++ client logs every producer and consumer at INFO to stdout; keep it to warnings.
    return pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn)


class _OAuth2Bearer:
    """Access tokens from an OAuth 2.0 issuer by the client-credentials grant (what Pulsar's
    AuthenticationOAuth2 plugin does), kept until shortly before they expire."""

    def __init__(self, identity: PulsarIdentity, http: urllib3.PoolManager) -> None:
        assert identity.oauth2 is not None
        self.oauth2 = identity.oauth2
        self.identity = identity
        self.http = http
        self._token: str | None = None
        self._until = 0.0
        self._lock = threading.Lock()

    def header(self, fresh: bool = False) -> str:
        with self._lock:
            if fresh or self._token is None or time.monotonic() >= self._until:
                self._token, lifetime = self._fetch()
                self._until = time.monotonic() + max(lifetime - OAUTH2_EARLY_REFRESH_SECONDS,
                                                     lifetime / 2)
            return f"Bearer {self._token}"

    def _fetch(self) -> tuple[str, float]:
        issuer = self.oauth2.issuer_url.rstrip("/")
        client_id, client_secret = self.oauth2.client(_oauth2_key_file(self.identity))
        found = self.http.request("GET", f"{issuer}/.well-known/openid-configuration")
        endpoint = f"{issuer}/oauth/token"
        if found.status == 200:
            with contextlib.suppress(ValueError, KeyError):
                endpoint = json.loads(found.data)["token_endpoint"]
        fields = {"grant_type": "client_credentials", "client_id": client_id,
                  "client_secret": client_secret}
        fields.update({k: v for k, v in (("audience", self.oauth2.audience),
                                         ("scope", self.oauth2.scope)) if v})
        answer = self.http.request_encode_body("POST", endpoint, fields=fields,
                                               encode_multipart=False)
        if answer.status != 200:
            # The issuer's reason is not shown: some echo the request, secret included.
            raise PulsarAdminError("POST", "the OAuth2 token endpoint", 401,
                                   f"the issuer refused the client credentials "
                                   f"(HTTP {answer.status})")
        try:
            body = json.loads(answer.data)
            return str(body["access_token"]), float(body.get("expires_in") or 3600)
        except (ValueError, KeyError):
            raise PulsarAdminError("POST", "the OAuth2 token endpoint", 401,
                                   "the issuer's answer has no access_token") from None


def admin_topic_path(topic: str) -> str:
    """The admin REST v2 path of a topic: persistent://t/ns/x -> /admin/v2/persistent/t/ns/x."""
    scheme, _, rest = topic.partition("://")
    return f"/admin/v2/{scheme}/{rest}"


class PulsarAdmin:
    """The few admin REST v2 calls the operator makes, with the client's auth and TLS."""

    def __init__(self, settings: Settings) -> None:
        self._files = _Files()
        self._setup(own_identity(settings), settings.pulsar_host_aliases)

    @classmethod
    def as_identity(cls, identity: PulsarIdentity, aliases: dict[str, str]) -> PulsarAdmin:
        """Admin calls on `identity`'s cluster with its credentials."""
        admin = cls.__new__(cls)
        admin._files = _Files()
        admin._setup(identity, aliases)
        return admin

    def _setup(self, identity: PulsarIdentity, aliases: dict[str, str]) -> None:
        self.identity = identity
        self.base = aliased(identity.admin_url, aliases).rstrip("/")
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        # The sampler reads stats from several threads: one kept connection each (urllib3
        # keeps one per host by default and opens, then drops, a new one for the others).
        pool: dict[str, Any] = {"timeout": urllib3.Timeout(connect=5, read=30), "retries": False,
                                "maxsize": 8}
        trust = _trust_file(identity, self._files)
        if trust is not None:
            pool["ca_certs"] = trust
        if identity.tls_cert_path is not None and identity.tls_key_path is not None:
            pool["cert_file"] = identity.tls_cert_path
            pool["key_file"] = identity.tls_key_path
        if identity.tls_allow_insecure:
            pool["cert_reqs"] = "CERT_NONE"
        if not identity.tls_hostname_verification:
            pool["assert_hostname"] = False
        self.http = urllib3.PoolManager(**pool)
        self._token_path: str | None = identity.token_path
        if identity.token is not None:
            self.headers["Authorization"] = f"Bearer {identity.token.get_secret_value()}"
        self._oauth2 = _OAuth2Bearer(identity, self.http) if identity.oauth2 else None

    def _headers(self, fresh: bool = False) -> dict[str, str]:
        if self._oauth2 is not None:
            return {**self.headers, "Authorization": self._oauth2.header(fresh)}
        if self._token_path is not None:
            token = _read_file(self._token_path, "the token file")
            return {**self.headers, "Authorization": f"Bearer {token}"}
        return self.headers

    def request(self, method: str, path: str, body: Any = None,
                ok: tuple[int, ...] = (200, 204)) -> Any:
        data = None if body is None else json.dumps(body).encode()
        response = self.http.request(method, self.base + path, body=data,
                                     headers=self._headers())
        if response.status == 401 and self._oauth2 is not None:  # the token may have expired
            response = self.http.request(method, self.base + path, body=data,
                                         headers=self._headers(fresh=True))
        if response.status not in ok:
            reason = response.data.decode(errors="replace")[:500]
            raise PulsarAdminError(method, path, response.status, reason)
        if not response.data:
            return None
        try:
            return json.loads(response.data)
        except ValueError:
            return response.data.decode()

    def close(self) -> None:
        self.http.clear()
        self._files.close()

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


def why_not(identity: PulsarIdentity, error: Exception) -> str:
    """A failed call on `identity`'s cluster, in words (never with a secret)."""
    if isinstance(error, PulsarAdminError):
        if error.status == 0:
            return f"cluster {identity.describe()}: {error.reason}"
        detail = "" if error.status in (401, 403) else error.reason[:200]
        return refusal(identity, error.status, detail)
    if isinstance(error, urllib3.exceptions.HTTPError | OSError):
        return refusal(identity, None, type(error).__name__)
    return f"cluster {identity.describe()}: {type(error).__name__}"


class ClusterSession:
    """One cluster and identity: an admin session now, a binary-protocol client when first
    asked for (the burst probes). The operator's own session is never closed by the pool."""

    def __init__(self, key: str, identity: PulsarIdentity, aliases: dict[str, str],
                 admin: PulsarAdmin | None = None, client: pulsar.Client | None = None) -> None:
        self.key = key
        self.identity = identity
        self.own = admin is not None
        self.admin = admin or PulsarAdmin.as_identity(identity, aliases)
        self._aliases = aliases
        self._client = client
        self._files = _Files()
        self._lock = threading.Lock()
        self.last_used = time.monotonic()
        self.closed = False

    def client(self) -> pulsar.Client:
        with self._lock:
            if self.closed:
                raise RuntimeError(f"the session on {self.describe()} is closed")
            if self._client is None:
                self._client = connect_as(self.identity, self._aliases, self._files)
            return self._client

    def describe(self) -> str:
        return self.identity.describe()

    def close(self) -> None:
        if self.own:
            return
        with self._lock:
            self.closed = True
            if self._client is not None:
                try:
                    self._client.close()
                except Exception:
                    log.debug("client close failed", exc_info=True)
                self._client = None
            self.admin.close()
            self._files.close()


class ClusterPool:
    """Sessions by cluster and identity (`PulsarIdentity.pool_key`), shared by every workload
    that names the same; the operator's own client and admin serve identities equal to its own."""

    def __init__(self, settings: Settings, own_client: pulsar.Client | None = None) -> None:
        self.aliases = dict(settings.pulsar_host_aliases)
        own = own_identity(settings)
        self.own_key = own.pool_key(self.aliases)
        self._own = ClusterSession(self.own_key, own, self.aliases, PulsarAdmin(settings),
                                   own_client)
        self._sessions: dict[str, ClusterSession] = {}
        self._lock = threading.Lock()
        self.opened = 0  # sessions opened over the pool's life (the operator's own not counted)

    def session(self, identity: PulsarIdentity) -> ClusterSession:
        key = identity.pool_key(self.aliases)
        if key == self.own_key:
            return self._own
        with self._lock:
            found = self._sessions.get(key)
            if found is None:
                found = self._sessions[key] = ClusterSession(key, identity, self.aliases)
                self.opened += 1
                log.info("Pulsar session opened", extra={"cluster": identity.describe(),
                                                         "session": key[:12]})
            found.last_used = time.monotonic()
            return found

    @property
    def own(self) -> ClusterSession:
        return self._own

    def keys(self) -> set[str]:
        with self._lock:
            return set(self._sessions)

    def retain(self, keys: Iterable[str]) -> list[str]:
        """Close the sessions whose key is not in `keys`; the clusters closed, described."""
        wanted = set(keys)
        with self._lock:
            gone = [self._sessions.pop(k) for k in list(self._sessions) if k not in wanted]
        for session in gone:
            session.close()
            log.info("Pulsar session closed: no workload uses it",
                     extra={"cluster": session.describe(), "session": session.key[:12]})
        return [s.describe() for s in gone]

    def close_idle(self, idle_seconds: float) -> list[str]:
        """Close the sessions not used for `idle_seconds` (callers without a list of users)."""
        now = time.monotonic()
        with self._lock:
            keep = [k for k, s in self._sessions.items() if now - s.last_used < idle_seconds]
        return self.retain(keep)

    def close(self) -> None:
        self.retain(())
        self._own.admin.close()
