"""Which Pulsar cluster, and as whom, a Function, Source or Sink talks to: pure logic, no I/O.

A workload's `spec.pulsar` names its cluster the way Function Mesh defines it:

- `pulsarConfig`: a ConfigMap with `webServiceURL` (admin REST) and `brokerServiceURL`;
- `authConfig` (OAuth2 client credentials from a Secret, or any plugin by class name and
  parameters), else `authSecret` (a Secret with `clientAuthenticationPlugin` and
  `clientAuthenticationParameters`);
- `tlsConfig` (CA certificate from a Secret), else `tlsSecret` (a Secret with
  `tlsAllowInsecureConnection`, `tlsHostnameVerificationEnable`, `tlsTrustCertsFilePath`);
- `cleanupAuthConfig`: replaces `authConfig` for the subscription clean-up.

`secrets_named` says which Secrets to read (and no other is read); `identity_of` turns the
ConfigMap's and those Secrets' data into a `PulsarIdentity`, or an `IdentityError` whose text
a person can act on. Secret values live in `SecretStr` fields only: they never appear in a
repr, an error or a pool key (a hash).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, SecretStr

from fmesh_events.models.common import AuthConfig, PulsarMessaging

TOKEN_PLUGINS = ("org.apache.pulsar.client.impl.auth.AuthenticationToken", "token")
OAUTH2_PLUGINS = ("org.apache.pulsar.client.impl.auth.oauth2.AuthenticationOAuth2", "oauth2")
TLS_PLUGINS = ("org.apache.pulsar.client.impl.auth.AuthenticationTls", "tls")

AUTH_SECRET_PLUGIN = "clientAuthenticationPlugin"
AUTH_SECRET_PARAMS = "clientAuthenticationParameters"
TLS_SECRET_INSECURE = "tlsAllowInsecureConnection"
TLS_SECRET_HOSTNAME = "tlsHostnameVerificationEnable"
TLS_SECRET_TRUST = "tlsTrustCertsFilePath"

_DEFAULT_PORTS = {"http": 80, "https": 443, "pulsar": 6650, "pulsar+ssl": 6651}

SecretData = Mapping[str, str]
"""A Secret's data, decoded (key -> text)."""


class IdentityError(ValueError):
    """The spec names a cluster or credentials this operator cannot use; says why, without a
    secret value."""


class OAuth2Credentials(BaseModel):
    """OAuth 2.0 client credentials: the issuer and the key file (client_id, client_secret)."""

    model_config = ConfigDict(frozen=True)

    issuer_url: str
    audience: str | None = None
    scope: str | None = None
    key_file: SecretStr | None = None  # the key file's JSON, from a Secret or a data: URL
    key_path: str | None = None  # or a path on the operator's file system

    def client(self, key_file: str) -> tuple[str, str]:
        """(client_id, client_secret) of a key file's JSON; IdentityError when it has none."""
        try:
            data = json.loads(key_file)
            return str(data["client_id"]), str(data["client_secret"])
        except (ValueError, KeyError, TypeError):
            raise IdentityError("the OAuth2 key file is not JSON with client_id and "
                                "client_secret") from None


class PulsarIdentity(BaseModel):
    """One Pulsar cluster and the credentials used on it: a pool key of its own."""

    model_config = ConfigDict(frozen=True)

    admin_url: str
    service_url: str | None = None
    config_map: str | None = None  # None: the operator's own cluster (its settings)
    token: SecretStr | None = None
    token_path: str | None = None  # a token file on the operator's file system
    oauth2: OAuth2Credentials | None = None
    tls_trust_certs: SecretStr | None = None  # PEM, from a Secret
    tls_trust_certs_path: str | None = None
    tls_cert_path: str | None = None  # mTLS client certificate and key (AuthenticationTls)
    tls_key_path: str | None = None
    tls_allow_insecure: bool = False
    tls_hostname_verification: bool = True

    @property
    def credential(self) -> str:
        """What the cluster would refuse, in words."""
        if self.token is not None or self.token_path is not None:
            return "token"
        if self.oauth2 is not None:
            return "OAuth2 credentials"
        if self.tls_cert_path is not None:
            return "client certificate"
        return "anonymous request"

    def describe(self) -> str:
        """The cluster as a person names it: its web service URL (no user info), and the
        ConfigMap that names it."""
        where = public_url(self.admin_url)
        return f"{where} (ConfigMap {self.config_map})" if self.config_map else where

    def pool_key(self, aliases: Mapping[str, str]) -> str:
        """Equal for the same cluster reached the same way as the same identity; a hash, so
        it can be logged or compared without showing a secret."""
        fields: dict[str, Any] = self.model_dump(exclude={"config_map"})
        fields["admin_url"] = normal_url(aliased(self.admin_url, aliases))
        fields["service_url"] = normal_url(aliased(self.service_url, aliases)) \
            if self.service_url else None
        for name in ("token", "tls_trust_certs"):
            value = getattr(self, name)
            fields[name] = value.get_secret_value() if value is not None else None
        if self.oauth2 is not None:
            fields["oauth2"] = {**self.oauth2.model_dump(), "key_file": (
                self.oauth2.key_file.get_secret_value() if self.oauth2.key_file else None)}
        text = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def aliased(url: str, aliases: Mapping[str, str]) -> str:
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


def public_url(url: str) -> str:
    """`url` without user info (a URL in a ConfigMap may carry a password)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def normal_url(url: str) -> str:
    """Scheme and host in lower case, the scheme's default port spelled out, no trailing /."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme)
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), parts.query, ""))


def auth_of(pulsar: PulsarMessaging, cleanup: bool = False) -> AuthConfig | None:
    """The authConfig in force: cleanupAuthConfig for the clean-up when set (Function Mesh)."""
    if cleanup and pulsar.cleanup_auth_config is not None:
        return pulsar.cleanup_auth_config
    return pulsar.auth_config


def secrets_named(pulsar: PulsarMessaging, cleanup: bool = False) -> tuple[str, ...]:
    """The Secrets `identity_of` needs, in the order it reads them: nothing else is read."""
    names: list[str] = []
    auth = auth_of(pulsar, cleanup)
    if auth is not None:
        if auth.oauth2_config is not None:
            names.append(auth.oauth2_config.key_secret_name)
    elif pulsar.auth_secret:
        names.append(pulsar.auth_secret)
    tls = pulsar.tls_config
    if tls is not None:
        if tls.enabled and tls.cert_secret_name and tls.cert_secret_key:
            names.append(tls.cert_secret_name)
    elif pulsar.tls_secret:
        names.append(pulsar.tls_secret)
    return tuple(dict.fromkeys(names))


def decode_secret_data(data: Mapping[str, str] | None) -> dict[str, str]:
    """A Secret's `data` (base64) as text; a value that is not UTF-8 is left out."""
    out: dict[str, str] = {}
    for key, value in (data or {}).items():
        try:
            out[key] = base64.b64decode(value).decode()
        except (ValueError, UnicodeDecodeError):
            continue
    return out


def _file_path(value: str) -> str:
    """A `file:` URL or a plain path, as a path."""
    if value.startswith("file://"):
        return unquote(urlsplit(value).path)
    return value[len("file:"):] if value.startswith("file:") else value


def _params(text: str) -> dict[str, str]:
    """Plugin parameters: JSON, or Pulsar's `key:value,key:value` form."""
    text = text.strip()
    if text.startswith("{"):
        try:
            loaded = json.loads(text)
        except ValueError:
            raise IdentityError("the authentication parameters are not valid JSON") from None
        return {str(k): str(v) for k, v in loaded.items() if v is not None}
    out: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _plugin(plugin: str, params: str, where: str) -> dict[str, Any]:
    """The identity fields of a client authentication plugin and its parameter string."""
    plugin = plugin.strip()
    if plugin in TOKEN_PLUGINS:
        params = params.strip()
        if params.startswith("token:"):
            return {"token": SecretStr(params[len("token:"):])}
        if params.startswith("file:"):
            return {"token_path": _file_path(params)}
        if params.startswith("{"):
            token = _params(params).get("token")
            if token:
                return {"token": SecretStr(token)}
        if not params:
            raise IdentityError(f"{where}: the token plugin has no token")
        return {"token": SecretStr(params)}
    if plugin in OAUTH2_PLUGINS:
        found = _params(params)
        issuer = found.get("issuerUrl") or found.get("issuer_url")
        key = found.get("privateKey") or found.get("private_key") or ""
        if not issuer or not key:
            raise IdentityError(f"{where}: the OAuth2 plugin needs issuerUrl and privateKey")
        credentials: dict[str, Any] = {"issuer_url": issuer, "audience": found.get("audience"),
                                       "scope": found.get("scope")}
        if key.startswith("data:"):
            _, _, payload = key.partition(",")
            try:
                text = base64.b64decode(payload).decode() if ";base64" in key.split(",")[0] \
                    else unquote(payload)
            except (ValueError, UnicodeDecodeError):
                raise IdentityError(f"{where}: the OAuth2 privateKey data: URL does not decode") \
                    from None
            credentials["key_file"] = SecretStr(text)
        else:
            credentials["key_path"] = _file_path(key)
        return {"oauth2": OAuth2Credentials(**credentials)}
    if plugin in TLS_PLUGINS:
        found = _params(params)
        cert, key_file = found.get("tlsCertFile"), found.get("tlsKeyFile")
        if not cert or not key_file:
            raise IdentityError(f"{where}: the TLS plugin needs tlsCertFile and tlsKeyFile")
        return {"tls_cert_path": _file_path(cert), "tls_key_path": _file_path(key_file)}
    raise IdentityError(f"{where}: authentication plugin {plugin!r} is not supported here "
                        "(token, OAuth2 client credentials and TLS are)")


def _secret(secrets: Mapping[str, SecretData | None], name: str, field: str,
            namespace: str) -> SecretData:
    data = secrets.get(name)
    if data is None:
        raise IdentityError(f"Secret {name!r} named by {field} does not exist in namespace "
                            f"{namespace!r} (or may not be read)")
    return data


def _key(data: SecretData, name: str, key: str) -> str:
    if key not in data:
        raise IdentityError(f"Secret {name!r} has no key {key!r}")
    return data[key]


def _true(value: str | None, default: bool) -> bool:
    return default if value is None else value.strip().lower() == "true"


def identity_of(pulsar: PulsarMessaging, config_map: Mapping[str, str] | None,
                secrets: Mapping[str, SecretData | None], namespace: str,
                cleanup: bool = False) -> PulsarIdentity:
    """The cluster and credentials `pulsar` names, from the ConfigMap's data and the data of
    the Secrets `secrets_named` listed (None: missing). IdentityError says what is wrong."""
    if config_map is None:
        raise IdentityError(f"ConfigMap {pulsar.pulsar_config!r} named by spec.pulsar.pulsarConfig "
                            f"does not exist in namespace {namespace!r}")
    admin_url = (config_map.get("webServiceURL") or "").strip()
    if not admin_url:
        raise IdentityError(f"ConfigMap {pulsar.pulsar_config!r} has no webServiceURL")
    fields: dict[str, Any] = {
        "admin_url": admin_url, "config_map": pulsar.pulsar_config,
        "service_url": (config_map.get("brokerServiceURL") or "").strip() or None,
    }
    auth = auth_of(pulsar, cleanup)
    which = "spec.pulsar.cleanupAuthConfig" if cleanup and pulsar.cleanup_auth_config \
        else "spec.pulsar.authConfig"
    if auth is not None:
        if auth.oauth2_config is not None:
            o = auth.oauth2_config
            data = _secret(secrets, o.key_secret_name, f"{which}.oauth2Config", namespace)
            fields["oauth2"] = OAuth2Credentials(
                issuer_url=o.issuer_url, audience=o.audience, scope=o.scope,
                key_file=SecretStr(_key(data, o.key_secret_name, o.key_secret_key)))
        elif auth.generic_auth is not None:
            g = auth.generic_auth
            fields.update(_plugin(g.client_authentication_plugin,
                                  g.client_authentication_parameters, f"{which}.genericAuth"))
    elif pulsar.auth_secret:
        name = pulsar.auth_secret
        data = _secret(secrets, name, "spec.pulsar.authSecret", namespace)
        plugin = _key(data, name, AUTH_SECRET_PLUGIN)
        fields.update(_plugin(plugin, _key(data, name, AUTH_SECRET_PARAMS), f"Secret {name!r}"))
    tls = pulsar.tls_config
    if tls is not None:
        if tls.enabled:
            fields["tls_allow_insecure"] = bool(tls.allow_insecure)
            fields["tls_hostname_verification"] = bool(tls.hostname_verification)
            if tls.cert_secret_name and tls.cert_secret_key:
                data = _secret(secrets, tls.cert_secret_name, "spec.pulsar.tlsConfig", namespace)
                fields["tls_trust_certs"] = SecretStr(
                    _key(data, tls.cert_secret_name, tls.cert_secret_key))
    elif pulsar.tls_secret:
        data = _secret(secrets, pulsar.tls_secret, "spec.pulsar.tlsSecret", namespace)
        fields["tls_allow_insecure"] = _true(data.get(TLS_SECRET_INSECURE), False)
        fields["tls_hostname_verification"] = _true(data.get(TLS_SECRET_HOSTNAME), True)
        if data.get(TLS_SECRET_TRUST):
            fields["tls_trust_certs_path"] = _file_path(data[TLS_SECRET_TRUST])
    return PulsarIdentity(**fields)


def refusal(identity: PulsarIdentity, status: int | None, detail: str = "") -> str:
    """Why a cluster gave no answer, in words: `status` is the HTTP status (None: no answer).

    `detail` is shown only for an unreachable cluster or an unexpected status; it must not
    hold a secret (callers pass an exception's class or the broker's short reason)."""
    cluster = f"cluster {identity.describe()}"
    if status == 401:
        if identity.credential == "anonymous request":
            return f"{cluster} refused an anonymous request (spec.pulsar names no credentials)"
        return f"{cluster} refused the {identity.credential}"
    if status == 403:
        return f"{cluster} denied this {identity.credential} access (HTTP 403)"
    if status is None:
        return f"{cluster} is unreachable: {detail}" if detail else f"{cluster} is unreachable"
    return f"{cluster} answered HTTP {status}" + (f": {detail}" if detail else "")
