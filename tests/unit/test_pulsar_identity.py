"""Which cluster and identity a spec.pulsar names (fmesh_events.pulsar_identity), the pool's
keys and sessions (pulsar_client.ClusterPool, no network), and the words of a refusal."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from pydantic import SecretStr

from fmesh_events import pulsar_client
from fmesh_events.models.common import PulsarMessaging
from fmesh_events.pulsar_identity import (
    IdentityError,
    PulsarIdentity,
    decode_secret_data,
    identity_of,
    normal_url,
    public_url,
    refusal,
    secrets_named,
)
from fmesh_events.scale import hpa, scaler
from fmesh_events.scale import spec as scale_spec
from fmesh_events.settings import Settings

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJmbiJ9.c2lnbmF0dXJl"
CONFIG = {"webServiceURL": "http://pulsar-b:8080", "brokerServiceURL": "pulsar://pulsar-b:6650"}
TOKEN_PLUGIN = "org.apache.pulsar.client.impl.auth.AuthenticationToken"


def spec(**fields: Any) -> PulsarMessaging:
    return PulsarMessaging.model_validate({"pulsarConfig": "cluster-b", **fields})


def auth_secret(params: str, plugin: str = TOKEN_PLUGIN) -> dict[str, str]:
    return {"clientAuthenticationPlugin": plugin, "clientAuthenticationParameters": params}


OAUTH2 = {"oauth2Config": {"audience": "urn:a", "issuerUrl": "https://issuer", "keySecretName": "key",
                           "keySecretKey": "auth.json"}}


# ------------------------------------------------------------------ which Secrets are read
@pytest.mark.parametrize(("fields", "cleanup", "expected"), [
    ({}, False, ()),
    ({"authSecret": "a"}, False, ("a",)),
    ({"authSecret": "a", "authConfig": OAUTH2}, False, ("key",)),  # authConfig replaces it
    ({"authSecret": "a", "authConfig": {"genericAuth": {
        "clientAuthenticationPlugin": TOKEN_PLUGIN, "clientAuthenticationParameters": "token:x"}}},
     False, ()),
    ({"authConfig": OAUTH2, "cleanupAuthConfig": {"oauth2Config": {**OAUTH2["oauth2Config"],
                                                                   "keySecretName": "ck"}}},
     True, ("ck",)),
    ({"authConfig": OAUTH2, "cleanupAuthConfig": {"oauth2Config": {**OAUTH2["oauth2Config"],
                                                                   "keySecretName": "ck"}}},
     False, ("key",)),
    ({"tlsSecret": "t"}, False, ("t",)),
    ({"tlsSecret": "t", "tlsConfig": {"enabled": True, "certSecretName": "ca", "certSecretKey": "ca.crt"}},
     False, ("ca",)),
    ({"tlsConfig": {"enabled": False, "certSecretName": "ca", "certSecretKey": "ca.crt"}}, False, ()),
    ({"authSecret": "same", "tlsSecret": "same"}, False, ("same",)),
])
def test_only_the_secrets_the_spec_names_are_read(fields: dict[str, Any], cleanup: bool,
                                                  expected: tuple[str, ...]) -> None:
    assert secrets_named(spec(**fields), cleanup) == expected


# ------------------------------------------------------------------ the identity
@pytest.mark.parametrize(("params", "token", "path"), [
    (f"token:{TOKEN}", TOKEN, None),
    (TOKEN, TOKEN, None),
    (json.dumps({"token": TOKEN}), TOKEN, None),
    ("file:///var/run/token", None, "/var/run/token"),
])
def test_auth_secret_token_forms(params: str, token: str | None, path: str | None) -> None:
    found = identity_of(spec(authSecret="a"), CONFIG, {"a": auth_secret(params)}, "ns")
    assert (found.token.get_secret_value() if found.token else None) == token
    assert found.token_path == path
    assert found.credential == "token" and found.admin_url == CONFIG["webServiceURL"]
    assert found.service_url == CONFIG["brokerServiceURL"] and found.config_map == "cluster-b"


def test_oauth2_config_takes_the_key_file_from_its_secret() -> None:
    key = json.dumps({"client_id": "c", "client_secret": "s3cret"})
    found = identity_of(spec(authConfig=OAUTH2), CONFIG, {"key": {"auth.json": key}}, "ns")
    assert found.oauth2 is not None and found.credential == "OAuth2 credentials"
    assert found.oauth2.issuer_url == "https://issuer" and found.oauth2.audience == "urn:a"
    assert found.oauth2.key_file is not None and found.oauth2.client(
        found.oauth2.key_file.get_secret_value()) == ("c", "s3cret")


def test_cleanup_auth_config_replaces_auth_config_for_the_cleanup_only() -> None:
    pulsar = spec(authConfig=OAUTH2, cleanupAuthConfig={"genericAuth": {
        "clientAuthenticationPlugin": TOKEN_PLUGIN, "clientAuthenticationParameters": f"token:{TOKEN}"}})
    assert identity_of(pulsar, CONFIG, {}, "ns", cleanup=True).credential == "token"
    with pytest.raises(IdentityError, match=r"Secret 'key' named by spec\.pulsar\.authConfig\.oauth2Config"):
        identity_of(pulsar, CONFIG, {}, "ns")


def test_oauth2_and_tls_plugins_by_class_name() -> None:
    key = base64.b64encode(b'{"client_id":"c","client_secret":"x"}').decode()
    data = "data:application/json;base64," + key
    oauth = identity_of(spec(authSecret="a"), CONFIG, {"a": auth_secret(json.dumps(
        {"issuerUrl": "https://i", "privateKey": data, "audience": "aud"}),
        "org.apache.pulsar.client.impl.auth.oauth2.AuthenticationOAuth2")}, "ns")
    assert oauth.oauth2 is not None and oauth.oauth2.key_file is not None
    assert json.loads(oauth.oauth2.key_file.get_secret_value())["client_id"] == "c"
    tls = identity_of(spec(authSecret="a"), CONFIG, {"a": auth_secret(
        "tlsCertFile:/certs/c.pem,tlsKeyFile:file:///certs/k.pem",
        "org.apache.pulsar.client.impl.auth.AuthenticationTls")}, "ns")
    assert (tls.tls_cert_path, tls.tls_key_path) == ("/certs/c.pem", "/certs/k.pem")
    assert tls.credential == "client certificate"


def test_tls_config_and_tls_secret() -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    config = identity_of(spec(tlsConfig={"enabled": True, "allowInsecure": True,
                                         "certSecretName": "ca", "certSecretKey": "ca.crt"}),
                         CONFIG, {"ca": {"ca.crt": pem}}, "ns")
    assert config.tls_trust_certs is not None and config.tls_trust_certs.get_secret_value() == pem
    assert config.tls_allow_insecure and not config.tls_hostname_verification
    old = identity_of(spec(tlsSecret="t"), CONFIG, {"t": {
        "tlsAllowInsecureConnection": "false", "tlsHostnameVerificationEnable": "true",
        "tlsTrustCertsFilePath": "/etc/ssl/ca.pem"}}, "ns")
    assert old.tls_trust_certs_path == "/etc/ssl/ca.pem"
    assert not old.tls_allow_insecure and old.tls_hostname_verification


@pytest.mark.parametrize(("fields", "config", "secrets", "message"), [
    ({}, None, {}, "ConfigMap 'cluster-b' named by spec.pulsar.pulsarConfig does not exist in "
                   "namespace 'ns'"),
    ({}, {"brokerServiceURL": "pulsar://x:6650"}, {}, "ConfigMap 'cluster-b' has no webServiceURL"),
    ({"authSecret": "a"}, CONFIG, {"a": None},
     "Secret 'a' named by spec.pulsar.authSecret does not exist in namespace 'ns'"),
    ({"authSecret": "a"}, CONFIG, {"a": {"clientAuthenticationPlugin": TOKEN_PLUGIN}},
     "Secret 'a' has no key 'clientAuthenticationParameters'"),
    ({"authSecret": "a"}, CONFIG, {"a": auth_secret("user:" + TOKEN, "com.example.Basic")},
     "authentication plugin 'com.example.Basic' is not supported"),
])
def test_what_is_wrong_is_said_without_a_secret(fields: dict[str, Any], config: dict[str, str] | None,
                                                secrets: dict[str, Any], message: str) -> None:
    with pytest.raises(IdentityError) as error:
        identity_of(spec(**fields), config, secrets, "ns")
    assert message in str(error.value)
    assert TOKEN not in str(error.value)


def test_secrets_stay_out_of_repr_and_the_pool_key() -> None:
    found = identity_of(spec(authSecret="a"), CONFIG, {"a": auth_secret(f"token:{TOKEN}")}, "ns")
    assert TOKEN not in repr(found) and TOKEN not in str(found)
    assert TOKEN not in found.pool_key({}) and len(found.pool_key({})) == 32


def test_decode_secret_data() -> None:
    encoded = {"a": base64.b64encode(b"text").decode(), "bin": base64.b64encode(b"\xff\xfe").decode()}
    assert decode_secret_data(encoded) == {"a": "text"}
    assert decode_secret_data(None) == {}


# ------------------------------------------------------------------ pool keys
def identity(**fields: Any) -> PulsarIdentity:
    return PulsarIdentity(**{"admin_url": "http://pulsar-b:8080",
                             "service_url": "pulsar://pulsar-b:6650", **fields})


def test_pool_keys_name_the_cluster_and_the_identity() -> None:
    same = identity(config_map="one"), identity(config_map="other",
                                                admin_url="HTTP://Pulsar-B:8080/")
    assert same[0].pool_key({}) == same[1].pool_key({})  # the ConfigMap's name does not count
    assert identity(token=SecretStr("a")).pool_key({}) != identity(token=SecretStr("b")).pool_key({})
    assert identity().pool_key({}) != identity(token=SecretStr("a")).pool_key({})
    assert identity(admin_url="http://pulsar-c:8080").pool_key({}) != identity().pool_key({})
    # Aliases: the name a pod uses and the address the host uses are one cluster.
    aliases = {"pulsar-b": "10.0.0.7"}
    assert identity().pool_key(aliases) == identity(
        admin_url="http://10.0.0.7:8080", service_url="pulsar://10.0.0.7:6650").pool_key(aliases)


@pytest.mark.parametrize(("url", "normal"), [
    ("http://Host", "http://host:80"), ("https://host/", "https://host:443"),
    ("pulsar://h", "pulsar://h:6650"), ("pulsar+ssl://h", "pulsar+ssl://h:6651"),
    ("http://h:8080/admin/", "http://h:8080/admin"),
])
def test_normal_url(url: str, normal: str) -> None:
    assert normal_url(url) == normal


def test_the_operators_own_identity_is_reused() -> None:
    settings = Settings(pulsar_admin_url="http://pulsar-b:8080",
                        pulsar_service_url="pulsar://pulsar-b:6650")
    pool = pulsar_client.ClusterPool(settings)
    try:
        own = pool.session(identity(config_map="cm"))
        assert own is pool.own and own.own and pool.keys() == set()
        other = pool.session(identity(token=SecretStr(TOKEN)))
        again = pool.session(identity(token=SecretStr(TOKEN), config_map="another-cm"))
        assert other is again and not other.own and pool.keys() == {other.key}
        assert pool.retain({other.key}) == [] and not other.closed
        assert pool.retain(set()) == ["http://pulsar-b:8080"] and other.closed
        with pytest.raises(RuntimeError, match="closed"):
            other.client()
        assert not own.closed and pool.opened == 1
    finally:
        pool.close()


def test_idle_sessions_close() -> None:
    pool = pulsar_client.ClusterPool(Settings())
    try:
        session = pool.session(identity())
        assert pool.close_idle(600) == [] and not session.closed
        assert pool.close_idle(0) == ["http://pulsar-b:8080"] and session.closed
    finally:
        pool.close()


# ------------------------------------------------------------------ the words
def test_refusals_in_words() -> None:
    token = identity(config_map="cluster-b", token=SecretStr(TOKEN))
    assert refusal(token, 401) == "cluster http://pulsar-b:8080 (ConfigMap cluster-b) refused the token"
    assert refusal(token, 403) == ("cluster http://pulsar-b:8080 (ConfigMap cluster-b) denied this "
                                   "token access (HTTP 403)")
    assert refusal(identity(), 401) == ("cluster http://pulsar-b:8080 refused an anonymous request "
                                        "(spec.pulsar names no credentials)")
    assert refusal(identity(), None, "NewConnectionError") == \
        "cluster http://pulsar-b:8080 is unreachable: NewConnectionError"
    oauth = identity(oauth2={"issuer_url": "https://i"})
    assert refusal(oauth, 401).endswith("refused the OAuth2 credentials")
    assert public_url("http://user:pw@h:1/x") == "http://h:1/x"
    assert "pw" not in identity(admin_url="http://user:pw@h:1", config_map="c").describe()


def test_why_not_says_the_cluster_and_keeps_the_broker_reason_for_other_statuses() -> None:
    token = identity(token=SecretStr(TOKEN))
    refused = pulsar_client.PulsarAdminError("GET", "/x", 401, f"bad token {TOKEN}")
    assert pulsar_client.why_not(token, refused) == "cluster http://pulsar-b:8080 refused the token"
    odd = pulsar_client.PulsarAdminError("GET", "/x", 500, "internal")
    assert pulsar_client.why_not(token, odd) == "cluster http://pulsar-b:8080 answered HTTP 500: internal"
    assert pulsar_client.why_not(token, ConnectionRefusedError()) == \
        "cluster http://pulsar-b:8080 is unreachable: ConnectionRefusedError"


def test_the_decision_quotes_why_the_backlog_is_unknown() -> None:
    why = "backlog unknown: cluster http://b:8080 (ConfigMap b) refused the token"
    signal = {"backlog": None, "missing": ["pod metrics: x", why]}
    assert scaler.backlog_missing(signal) == why
    assert scaler.backlog_missing({"backlog": 3, "missing": [why]}) is None
    wanted = scale_spec.ScaleSpec(True, 1, 10, None, None, 100, 0, hpa.DEFAULT_BEHAVIOR)
    decision = hpa.decide(wanted, hpa.Inputs(current=2, now=0.0, backlog_missing=why), [], [])
    assert decision.desired == 2 and decision.reason == f"no metrics ({why}): holding at 2"
