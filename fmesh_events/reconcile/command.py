"""The command line of a Function, Source or Sink instance, as Function Mesh builds it.

Pure functions, no I/O. The container runs ``bash -c`` (``sh -c`` for a generic runtime)
with one string: compute the shard id from the pod name, optionally download the
package, optionally write a logging configuration, then ``exec`` the Pulsar instance
(Java ``JavaInstanceMain``, the Python instance, a Go executable or a generic runtime)
with the function details as protobuf JSON (Pulsar's ``FunctionDetails``).

The broker and web service URLs are not on the command line: they are environment
variables (``$brokerServiceURL``, ``$webServiceURL``) loaded from the ConfigMap named by
``spec.pulsar.pulsarConfig``, exactly as Function Mesh does.
"""

from __future__ import annotations

import json
import re
import shlex
from decimal import ROUND_CEILING
from typing import Any

from fmesh_events.models import Function, Sink, Source
from fmesh_events.models.base import quantity
from fmesh_events.models.common import (
    AuthConfig,
    CryptoConfig,
    ProducerConfig,
    PulsarMessaging,
    RuntimeLogConfig,
    TLSConfig,
)
from fmesh_events.models.inputs import pulsar_name, pulsar_namespace, tenant

Workload = Function | Source | Sink
"""A kind that runs as a StatefulSet."""

# --------------------------------------------------------------------------- constants

SHARD_ID = "SHARD_ID"
GRPC_PORT = 9093
METRICS_PORT = 9094

DEFAULT_CLUSTER = "kubernetes"
DEFAULT_TYPE_CLASS_NAME = "[B"
DEFAULT_MAX_PENDING_ASYNC_REQUESTS = 1000

# Runner images Function Mesh falls back to when spec.image is empty.
DEFAULT_RUNNER_TAG = "2.10.0.0-rc10"
DEFAULT_GENERIC_RUNNER_TAG = "0.1.0"
DEFAULT_RUNNER_IMAGE = f"streamnative/pulsar-all:{DEFAULT_RUNNER_TAG}"
DEFAULT_JAVA_RUNNER_IMAGE = f"streamnative/pulsar-functions-java-runner:{DEFAULT_RUNNER_TAG}"
DEFAULT_PYTHON_RUNNER_IMAGE = f"streamnative/pulsar-functions-python-runner:{DEFAULT_RUNNER_TAG}"
DEFAULT_GO_RUNNER_IMAGE = f"streamnative/pulsar-functions-go-runner:{DEFAULT_RUNNER_TAG}"
DEFAULT_GENERIC_RUNNER_IMAGES: dict[str, str] = {
    "nodejs": f"streamnative/pulsar-functions-generic-nodejs-runner:{DEFAULT_GENERIC_RUNNER_TAG}",
    "python": f"streamnative/pulsar-functions-generic-python-runner:{DEFAULT_GENERIC_RUNNER_TAG}",
    "executable": f"streamnative/pulsar-functions-generic-base-runner:{DEFAULT_GENERIC_RUNNER_TAG}",
}
DEFAULT_FILEBEAT_IMAGE = "streamnative/filebeat:v0.6.0"

# Runner images known to ship pulsarctl and wget.
RUNNER_IMAGE_HAS_PULSARCTL = re.compile(
    r"pulsar-functions-(pulsarctl|sn|generic)-(java|python|go|nodejs|base)-runner"
)

PULSAR_ADMIN = "/pulsar/bin/pulsar-admin"
PULSARCTL = "pulsarctl"
WORK_DIR = "/pulsar/"
CONNECTORS_DIRECTORY = "/pulsar/connectors"

JAVA_INSTANCE_PATH = "/pulsar/instances/java-instance.jar"
JAVA_ENTRY_CLASS = "org.apache.pulsar.functions.instance.JavaInstanceMain"
PYTHON_INSTANCE_MAIN = "/pulsar/instances/python-instance/python_instance_main.py"

JAVA_LOG_DIR = "/pulsar/conf/java-log/"
JAVA_LOG_FILE_XML = "java_instance_log4j.xml"
JAVA_LOG_FILE_YAML = "java_instance_log4j.yaml"
PYTHON_LOG_DIR = "/pulsar/conf/python-log/"
PYTHON_LOG_FILE = "python_instance_logging.ini"
FUNCTION_LOG_DIR = "logs/functions"

IDENTITY_FUNCTION = "org.apache.pulsar.functions.api.utils.IdentityFunction"
WINDOW_FUNCTION_EXECUTOR = "org.apache.pulsar.functions.windowing.WindowFunctionExecutor"
WINDOW_CONFIG_KEY = "__WINDOWCONFIGS__"
BATCH_SOURCE_CLASS = "org.apache.pulsar.functions.source.batch.BatchSourceExecutor"
BATCH_SOURCE_CONFIG_KEY = "__BATCHSOURCECONFIGS__"
BATCH_SOURCE_CLASS_NAME_KEY = "__BATCHSOURCECLASSNAME__"

OAUTH2_PLUGIN = "org.apache.pulsar.client.impl.auth.oauth2.AuthenticationOAuth2"
TOKEN_PLUGIN = "org.apache.pulsar.client.impl.auth.AuthenticationToken"
JAVA_SECRETS_PROVIDER = "org.apache.pulsar.functions.secretsprovider.EnvironmentBasedSecretsProvider"
PYTHON_SECRETS_PROVIDER = "secretsprovider.EnvironmentBasedSecretsProvider"

TLS_MOUNT_PATH = "/etc/tls/pulsar-functions"
OAUTH2_MOUNT_PATH = "/etc/oauth2"
PACKAGE_ENV_PREFIX = "PACKAGE_"
PACKAGE_TLS_MOUNT_PATH = "/etc/tls/pulsar-functions-package-service"
PACKAGE_OAUTH2_MOUNT_PATH = "/etc/oauth2-package-service"

PACKAGE_PREFIXES = ("function://", "sink://", "source://")
HTTP_PREFIXES = ("http://", "https://")

GO_CONF_ENV = "GO_FUNCTION_CONF"
GO_LOG_LEVEL_ENV = "LOGGING_LEVEL"

# --------------------------------------------------------------------------- small helpers


def sq(value: str) -> str:
    """Always single-quote ``value`` for bash (a literal, nothing expanded)."""
    return "'" + value.replace("'", "'\"'\"'") + "'"


def word(value: str) -> str:
    """Quote ``value`` for bash only when it needs it."""
    return shlex.quote(value)


def compact_json(value: Any) -> str:
    """JSON with sorted keys and no spaces (Go's json.Marshal of a map sorts keys too)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def quantity_value(value: object) -> int:
    """The quantity rounded up to an integer, as resource.Quantity.Value() does (0 if unset)."""
    number = quantity(value)
    if number is None:
        return 0
    return int(number.to_integral_value(rounding=ROUND_CEILING))


def decimal_si(value: int) -> str:
    """An integer in Kubernetes' canonical decimal-SI form: 220000000 -> 220M."""
    if value == 0:
        return "0"
    for exponent, suffix in ((18, "E"), (15, "P"), (12, "T"), (9, "G"), (6, "M"), (3, "k")):
        if value % 10**exponent == 0:
            return f"{value // 10**exponent}{suffix}"
    return str(value)


def _drop_zero(obj: dict[str, Any]) -> dict[str, Any]:
    """Drop proto3 default values (None, "", 0, False, empty maps and lists) like protojson.

    Nested messages that are present are kept even when empty: protojson prints a set
    message as ``{}``.
    """
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if value is None or value == "" or value is False or value == [] or value == {}:
            if isinstance(value, dict) and key in _KEEP_EMPTY_MESSAGES:
                out[key] = value
            continue
        if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
            continue
        out[key] = value
    return out


# Message-typed fields that protojson prints even when every field inside is default.
_KEEP_EMPTY_MESSAGES = frozenset({"source", "sink", "resources", "producerSpec", "retryDetails"})


# --------------------------------------------------------------------------- names and defaults


def object_name(cr: Workload) -> str:
    return str(cr.metadata.get("name") or "")


def object_namespace(cr: Workload) -> str:
    return str(cr.metadata.get("namespace") or "default")


def object_uid(cr: Workload) -> str:
    return str(cr.metadata.get("uid") or "")


def cluster_name(cr: Workload) -> str:
    return cr.spec.cluster_name or DEFAULT_CLUSTER


def log_topic_agent(cr: Workload) -> str:
    """Who ships logTopic: the runtime (Function default) or a filebeat sidecar (Source/Sink)."""
    if cr.spec.log_topic_agent:
        return cr.spec.log_topic_agent
    return "runtime" if isinstance(cr, Function) else "sidecar"


def uses_filebeat(cr: Workload) -> bool:
    return bool(cr.spec.log_topic) and log_topic_agent(cr) == "sidecar"


def runtime_kind(cr: Workload) -> str:
    """java, python, golang or generic (Source and Sink run Java unless told otherwise)."""
    spec = cr.spec
    if spec.python is not None:
        return "python"
    if spec.golang is not None:
        return "golang"
    if spec.generic_runtime is not None:
        return "generic"
    return "java"


def runner_image(cr: Workload) -> str:
    """spec.image, else the runner image Function Mesh defaults to for the runtime."""
    spec = cr.spec
    if spec.image:
        return spec.image
    if isinstance(cr, Function):
        if spec.java is not None and spec.java.jar:
            return DEFAULT_JAVA_RUNNER_IMAGE
        if spec.python is not None and spec.python.py:
            return DEFAULT_PYTHON_RUNNER_IMAGE
        if spec.golang is not None and spec.golang.go:
            return DEFAULT_GO_RUNNER_IMAGE
        if spec.generic_runtime is not None:
            return DEFAULT_GENERIC_RUNNER_IMAGES.get(spec.generic_runtime.language, DEFAULT_RUNNER_IMAGE)
        return DEFAULT_RUNNER_IMAGE
    java = spec.java
    if java is not None and java.jar and (java.jar_location or "").startswith(PACKAGE_PREFIXES):
        return DEFAULT_JAVA_RUNNER_IMAGE
    return DEFAULT_RUNNER_IMAGE


def _image_tools(cr: Workload) -> tuple[bool, bool]:
    """(has pulsarctl, has wget) for the download step."""
    has_pulsarctl = bool(cr.spec.image_has_pulsarctl)
    has_wget = bool(cr.spec.image_has_wget)
    if cr.spec.image and RUNNER_IMAGE_HAS_PULSARCTL.search(cr.spec.image):
        has_pulsarctl = has_wget = True
    return has_pulsarctl, has_wget


# --------------------------------------------------------------------------- auth and TLS


def oauth2_params(key_file: str, issuer_url: str, audience: str, scope: str) -> str:
    """The parameter JSON of Pulsar's OAuth2 client plugin (both spellings of each key)."""
    params = {
        "credentials_url": f"file://{key_file}",
        "privateKey": key_file,
        "private_key": key_file,
        "issuerUrl": issuer_url,
        "issuer_url": issuer_url,
        "audience": audience,
        "scope": scope,
    }
    return json.dumps(params, separators=(",", ":"))


def tls_has_secret_volume(tls: TLSConfig | None) -> bool:
    return tls is not None and bool(tls.cert_secret_name) and bool(tls.cert_secret_key)


def _bool(value: bool | None) -> str:
    return "true" if value else "false"


def client_auth_args(pulsar: PulsarMessaging) -> list[str]:
    """--client_auth_plugin/--client_auth_params from authConfig, else from the authSecret env."""
    auth = pulsar.auth_config
    if auth is not None:
        if auth.oauth2_config is not None:
            o = auth.oauth2_config
            key_file = f"{OAUTH2_MOUNT_PATH}/{o.key_secret_key}"
            params = oauth2_params(key_file, o.issuer_url, o.audience, o.scope or "")
            return ["--client_auth_plugin", OAUTH2_PLUGIN, "--client_auth_params", sq(params)]
        if auth.generic_auth is not None:
            g = auth.generic_auth
            return [
                "--client_auth_plugin",
                word(g.client_authentication_plugin),
                "--client_auth_params",
                sq(g.client_authentication_parameters),
            ]
        return []
    if pulsar.auth_secret:
        return [
            "--client_auth_plugin",
            "$clientAuthenticationPlugin",
            "--client_auth_params",
            "$clientAuthenticationParameters",
        ]
    return []


def tls_args(pulsar: PulsarMessaging) -> list[str]:
    """--use_tls and friends from tlsConfig, else from the tlsSecret env, else off."""
    tls = pulsar.tls_config
    if tls is None:
        if pulsar.tls_secret:
            return [
                "--use_tls",
                "true",
                "--tls_allow_insecure",
                "${tlsAllowInsecureConnection:-false}",
                "--hostname_verification_enabled",
                "${tlsHostnameVerificationEnable:-true}",
                "--tls_trust_cert_path",
                "$tlsTrustCertsFilePath",
            ]
        return ["--use_tls", "false"]
    args = ["--use_tls", _bool(tls.enabled)]
    if tls.enabled:
        args += [
            "--tls_allow_insecure",
            _bool(tls.allow_insecure),
            "--hostname_verification_enabled",
            _bool(tls.hostname_verification),
        ]
        if tls_has_secret_volume(tls):
            args += ["--tls_trust_cert_path", word(f"{TLS_MOUNT_PATH}/{tls.cert_secret_key}")]
    return args


# --------------------------------------------------------------------------- package download


class _DownloadService:
    """The Pulsar cluster packages come from: pulsarPackageService, else spec.pulsar."""

    def __init__(self, cr: Workload) -> None:
        package = cr.spec.pulsar_package_service
        self.pulsar: PulsarMessaging = package or cr.spec.pulsar
        self.prefix = PACKAGE_ENV_PREFIX if package is not None else ""
        self.oauth2_mount = PACKAGE_OAUTH2_MOUNT_PATH if package is not None else OAUTH2_MOUNT_PATH
        self.tls_mount = PACKAGE_TLS_MOUNT_PATH if package is not None else TLS_MOUNT_PATH

    def env(self, name: str) -> str:
        return f"${self.prefix}{name}"

    @property
    def auth(self) -> AuthConfig | None:
        return self.pulsar.auth_config

    @property
    def tls(self) -> TLSConfig | None:
        return self.pulsar.tls_config

    def oauth2_key_file(self) -> str:
        assert self.auth is not None and self.auth.oauth2_config is not None
        return f"{self.oauth2_mount}/{self.auth.oauth2_config.key_secret_key}"

    def trust_cert_path(self) -> str:
        assert self.tls is not None
        return f"{self.tls_mount}/{self.tls.cert_secret_key}"


def _pulsar_admin(d: _DownloadService) -> list[str]:
    args = [PULSAR_ADMIN, "--admin-url", d.env("webServiceURL")]
    auth = d.auth
    if auth is not None and auth.oauth2_config is not None:
        o = auth.oauth2_config
        params = oauth2_params(d.oauth2_key_file(), o.issuer_url, o.audience, o.scope or "")
        args += ["--auth-plugin", OAUTH2_PLUGIN, "--auth-params", sq(params)]
    elif auth is not None and auth.generic_auth is not None:
        g = auth.generic_auth
        args += [
            "--auth-plugin",
            word(g.client_authentication_plugin),
            "--auth-params",
            sq(g.client_authentication_parameters),
        ]
    elif auth is None and d.pulsar.auth_secret:
        args += [
            "--auth-plugin",
            d.env("clientAuthenticationPlugin"),
            "--auth-params",
            d.env("clientAuthenticationParameters"),
        ]
    tls = d.tls
    if tls is None:
        if d.pulsar.tls_secret:
            args += [
                "--tls-allow-insecure",
                "--tls-enable-hostname-verification",
                "--tls-trust-cert-path",
                d.env("tlsTrustCertsFilePath"),
            ]
    elif tls.enabled:
        if tls.allow_insecure:
            args.append("--tls-allow-insecure")
        if tls.hostname_verification:
            args.append("--tls-enable-hostname-verification")
        if tls_has_secret_volume(tls):
            args += ["--tls-trust-cert-path", word(d.trust_cert_path())]
    return args


def _pulsarctl(d: _DownloadService) -> list[str]:
    path = "export PATH=$PATH:/pulsar/bin &&"
    url = d.env("webServiceURL")
    auth = d.auth
    if auth is not None and auth.oauth2_config is not None:
        o = auth.oauth2_config
        args = [path, PULSARCTL, "context", "set", "downloader", "--admin-service-url", url,
                "--issuer-endpoint", word(o.issuer_url), "--audience", word(o.audience),
                "--key-file", word(d.oauth2_key_file())]  # fmt: skip
        if o.scope:
            args += ["--scope", word(o.scope)]
        args += ["&&", PULSARCTL, "oauth2", "activate", "&&", PULSARCTL]
    elif auth is not None and auth.generic_auth is not None:
        g = auth.generic_auth
        params = sq(g.client_authentication_parameters)
        args = [path, "(", PULSARCTL, "oauth2", "activate", "--auth-params", params, "|| true ) &&",
                PULSARCTL, "--auth-plugin", word(g.client_authentication_plugin),
                "--auth-params", params, "--admin-service-url", url]  # fmt: skip
    elif auth is None and d.pulsar.auth_secret:
        plugin, params = d.env("clientAuthenticationPlugin"), d.env("clientAuthenticationParameters")
        args = [path, "(", PULSARCTL, "oauth2", "activate", "--auth-params", params, "|| true ) &&",
                PULSARCTL, "--auth-plugin", plugin, "--auth-params", params,
                "--admin-service-url", url]  # fmt: skip
    else:
        args = [path, PULSARCTL, "--admin-service-url", url]
    tls = d.tls
    if tls is None:
        if d.pulsar.tls_secret:
            args += [
                f"--tls-allow-insecure=${{{d.prefix}tlsAllowInsecureConnection:-false}}",
                f"--tls-enable-hostname-verification=${{{d.prefix}tlsHostnameVerificationEnable:-true}}",
                "--tls-trust-cert-path",
                d.env("tlsTrustCertsFilePath"),
            ]
    elif tls.enabled:
        args += [
            f"--tls-allow-insecure={_bool(tls.allow_insecure)}",
            f"--tls-enable-hostname-verification={_bool(tls.hostname_verification)}",
        ]
        if tls_has_secret_volume(tls):
            args += ["--tls-trust-cert-path", word(d.trust_cert_path())]
    return args


def download_command(cr: Workload, location: str, destination: str, *, generic: bool = False) -> str:
    """The command that fetches the package at ``location`` to ``destination``.

    http(s) URLs with wget when the image has it; Pulsar package URLs (function://,
    sink://, source://) with ``packages download``; anything else is a path in Pulsar's
    function storage, fetched with ``functions download``. pulsarctl replaces
    pulsar-admin when the image has it.
    """
    has_pulsarctl, has_wget = (True, True) if generic else _image_tools(cr)
    if location.startswith(HTTP_PREFIXES) and has_wget:
        return " ".join(["wget", word(location), "-O", word(destination)])
    d = _DownloadService(cr)
    args = _pulsarctl(d) if has_pulsarctl else _pulsar_admin(d)
    if location.startswith(PACKAGE_PREFIXES):
        args += ["packages", "download", word(location), "--path", word(destination)]
    else:
        args += ["functions", "download", "--path", word(location),
                 "--destination-file", word(destination)]  # fmt: skip
    return " ".join(args)


# --------------------------------------------------------------------------- function details


def _subscription_type(cr: Function | Sink) -> str:
    s = cr.spec
    if s.retain_ordering or s.processing_guarantee == "effectively_once":
        return "FAILOVER"
    if s.retain_key_ordering:
        return "KEY_SHARED"
    return "SHARED"


def _processing_guarantee(cr: Workload) -> str:
    return (cr.spec.processing_guarantee or "atleast_once").upper()


def _subscription_position(position: str | None) -> str:
    # Function Mesh maps anything but "latest" to EARLIEST.
    return "LATEST" if position == "latest" else "EARLIEST"


def _parallelism(cr: Workload) -> int:
    return cr.spec.replica_count if cr.spec.show_precise_parallelism else 1


def _dead_letter_topic(cr: Function | Sink) -> str:
    s = cr.spec
    dlt = s.dead_letter_topic or ""
    retries = s.max_message_retry or 0
    sub = s.subscription_name or ""
    if not dlt and retries > 0 and (not sub or "\\" in sub):
        # Pulsar's own default ($TOPIC-$SUBSCRIPTION-DLQ) would be invalid when the
        # subscription name is tenant/namespace/name.
        return f"{tenant(cr)}-{pulsar_namespace(cr)}-{pulsar_name(cr)}-DLQ"
    return dlt


def _retry_details(cr: Function | Sink) -> dict[str, Any] | None:
    retries = cr.spec.max_message_retry or 0
    dlt = _dead_letter_topic(cr)
    if retries <= 0 and not dlt:
        return None
    return _drop_zero({"maxMessageRetries": retries, "deadLetterTopic": dlt})


def _resources(cr: Workload) -> dict[str, Any]:
    requests = (cr.spec.resources.requests if cr.spec.resources else None) or {}
    cpu = quantity(requests.get("cpu"))
    ram = quantity_value(requests.get("memory"))
    disk = quantity_value(requests.get("storage"))
    return _drop_zero(
        {
            "cpu": float(cpu) if cpu is not None else 0,
            # protojson writes 64-bit integers as strings.
            "ram": str(ram) if ram else None,
            "disk": str(disk) if disk else None,
        }
    )


def _crypto_spec(conf: CryptoConfig | None) -> dict[str, Any] | None:
    if conf is None:
        return None
    actions = {"FAIL", "DISCARD", "CONSUME", "SEND"}
    producer = conf.producer_crypto_failure_action or ""
    consumer = conf.consumer_crypto_failure_action or ""
    spec = {
        "cryptoKeyReaderClassName": conf.crypto_key_reader_class_name,
        "cryptoKeyReaderConfig": (
            compact_json(conf.crypto_key_reader_config) if conf.crypto_key_reader_config is not None else None
        ),
        "producerEncryptionKeyName": list(conf.encryption_keys or []),
        "producerCryptoFailureAction": producer if producer in actions - {"FAIL"} else None,
        "consumerCryptoFailureAction": consumer if consumer in actions - {"FAIL"} else None,
    }
    return _drop_zero(spec)


def _producer_spec(conf: ProducerConfig | None) -> dict[str, Any] | None:
    if conf is None:
        return None
    compression = conf.compression_type or "LZ4"
    return _drop_zero(
        {
            "maxPendingMessages": conf.max_pending_messages,
            "maxPendingMessagesAcrossPartitions": conf.max_pending_messages_across_partitions,
            "useThreadLocalProducers": conf.use_thread_local_producers,
            "cryptoSpec": _crypto_spec(conf.crypto_config),
            "batchBuilder": conf.batch_builder,
            "compressionType": None if compression == "LZ4" else compression,
        }
    )


def _input_specs(cr: Function | Sink) -> dict[str, Any]:
    """topic -> ConsumerSpec, later forms overriding earlier ones as Function Mesh does."""
    conf = cr.spec.input
    specs: dict[str, Any] = {}
    if conf is None:
        return specs
    for topic in conf.topics or []:
        specs[topic] = {}
    if conf.topic_pattern:
        specs[conf.topic_pattern] = {"isRegexPattern": True}
    for topic, serde in sorted((conf.custom_serde_sources or {}).items()):
        specs[topic] = _drop_zero({"serdeClassName": serde})
    for topic, schema in sorted((conf.custom_schema_sources or {}).items()):
        specs[topic] = _drop_zero({"schemaType": schema})
    for topic, c in sorted((conf.source_specs or {}).items()):
        specs[topic] = _drop_zero(
            {
                "schemaType": c.schema_type,
                "serdeClassName": c.serde_class_name,
                "isRegexPattern": c.is_regex_pattern,
                "receiverQueueSize": (
                    {"value": c.receiver_queue_size} if c.receiver_queue_size is not None else None
                ),
                "schemaProperties": dict(sorted((c.schema_properties or {}).items())),
                "consumerProperties": dict(sorted((c.consumer_properties or {}).items())),
                "cryptoSpec": _crypto_spec(c.crypto_config),
            }
        )
    return specs


def _consumer_source_spec(cr: Function | Sink) -> dict[str, Any]:
    s = cr.spec
    input_type = (s.input.type_class_name if s.input else None) or DEFAULT_TYPE_CLASS_NAME
    # A Function redelivers a negatively acknowledged message after its timeout.
    nack_delay = (
        (s.timeout or 0) if isinstance(cr, Function) else (cr.spec.negative_ack_redelivery_delay_ms or 0)
    )
    return {
        "typeClassName": input_type,
        "subscriptionType": _subscription_type(cr),
        "inputSpecs": _input_specs(cr),
        "timeoutMs": str(s.timeout) if s.timeout else None,
        "subscriptionName": s.subscription_name,
        "cleanupSubscription": s.cleanup_subscription,
        "subscriptionPosition": _subscription_position(s.subscription_position),
        "negativeAckRedeliveryDelayMs": str(nack_delay) if nack_delay else None,
    }


def _batch_source_configs(
    configs: dict[str, Any], batch: Any, class_name: str | None
) -> tuple[dict[str, Any], str | None]:
    """Wrap a source's configs for Pulsar's BatchSourceExecutor, as Pulsar's worker does.

    Pulsar's instance takes only a Source as the source class: a BatchSource passed directly
    (Function Mesh's rendering, which leaves batchSourceConfig out) makes it fail with "Source
    does not implement correct interface" (tests/integration/test_runner_payload.py runs both).
    """
    if batch is None:
        return configs, class_name
    wrapped = dict(configs)
    wrapped[BATCH_SOURCE_CONFIG_KEY] = compact_json(
        batch.model_dump(by_alias=True, exclude_none=True, mode="json")
    )
    wrapped[BATCH_SOURCE_CLASS_NAME_KEY] = class_name or ""
    return wrapped, BATCH_SOURCE_CLASS


def _function_user_config(cr: Function) -> str | None:
    s = cr.spec
    config: dict[str, Any] | None = dict(s.func_config) if s.func_config is not None else None
    if s.window_config is not None:
        window = s.window_config.model_dump(by_alias=True, exclude_none=True, mode="json")
        window["actualWindowFunctionClassName"] = s.class_name or ""
        if "windowLengthDurationMs" in window and "slidingIntervalDurationMs" not in window:
            window["slidingIntervalDurationMs"] = window["windowLengthDurationMs"]
        config = config or {}
        config[WINDOW_CONFIG_KEY] = window
    return compact_json(config) if config is not None else None


def _builtin_name(builtin: str | None, typed: str | None, archive: str | None) -> str | None:
    if builtin:
        return builtin
    if typed:
        return typed
    if archive and archive.startswith("builtin://"):
        return archive.removeprefix("builtin://")
    return None


def _function_source_spec(cr: Function) -> dict[str, Any]:
    s = cr.spec
    spec = _consumer_source_spec(cr)
    spec["skipToLatest"] = s.skip_to_latest
    connector = s.source_config
    if connector is not None:
        spec["builtin"] = _builtin_name(connector.builtin, connector.source_type, connector.archive)
        configs, class_name = _batch_source_configs(
            dict(connector.configs or {}), connector.batch_source_config, connector.class_name
        )
        spec["className"] = class_name
        if configs:
            spec["configs"] = compact_json(configs)
        if connector.type_class_name and not (s.input and s.input.type_class_name):
            spec["typeClassName"] = connector.type_class_name
    return spec


def _function_sink_spec(cr: Function) -> dict[str, Any]:
    s = cr.spec
    out = s.output
    spec: dict[str, Any] = {
        "typeClassName": (out.type_class_name if out else None) or DEFAULT_TYPE_CLASS_NAME,
        "topic": out.topic if out else None,
        "producerSpec": _producer_spec(out.producer_conf) if out else None,
        "serDeClassName": out.sink_serde_class_name if out else None,
        "schemaType": out.sink_schema_type if out else None,
        "forwardSourceMessageProperty": s.forward_source_message_property is not False,
    }
    if out is not None and out.custom_schema_sinks and out.topic:
        # Function Mesh reads the entry for the output topic as a JSON ConsumerConfig.
        try:
            parsed = json.loads(out.custom_schema_sinks.get(out.topic, ""))
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            spec["schemaProperties"] = parsed.get("schemaProperties")
            spec["consumerProperties"] = parsed.get("consumerProperties")
    connector = s.sink_config
    if connector is not None:
        builtin = _builtin_name(connector.builtin, connector.sink_type, connector.archive)
        spec["builtin"] = builtin
        spec["className"] = connector.class_name
        configs = dict(connector.configs or {})
        if builtin:
            configs.setdefault("sinkType", builtin)
        if configs:
            spec["configs"] = compact_json(configs)
        if connector.type_class_name and not (out and out.type_class_name):
            spec["typeClassName"] = connector.type_class_name
    return spec


def _source_source_spec(cr: Source) -> dict[str, Any]:
    s = cr.spec
    configs, class_name = _batch_source_configs(
        dict(s.source_config or {}), s.batch_source_config, s.class_name
    )
    return {
        "className": class_name,
        "configs": compact_json(configs) if s.source_config is not None or configs else None,
        "typeClassName": s.output.type_class_name if s.output else None,
    }


def _source_sink_spec(cr: Source) -> dict[str, Any]:
    s = cr.spec
    out = s.output
    return {
        "typeClassName": out.type_class_name if out else None,
        "topic": out.topic if out else None,
        # Function Mesh always sets a producer spec for a source, empty when unset.
        "producerSpec": (_producer_spec(out.producer_conf) if out else None) or {},
        "serDeClassName": out.sink_serde_class_name if out else None,
        "schemaType": out.sink_schema_type if out else None,
        "forwardSourceMessageProperty": s.forward_source_message_property is not False,
    }


def _sink_sink_spec(cr: Sink) -> dict[str, Any]:
    s = cr.spec
    return {
        "className": s.class_name,
        "configs": compact_json(s.sink_config) if s.sink_config is not None else None,
        "typeClassName": s.input.type_class_name if s.input else None,
    }


def _secrets_map(cr: Workload) -> str | None:
    secrets = cr.spec.secrets_map
    if secrets is None:
        return None
    return compact_json({k: v.model_dump(exclude_none=True) for k, v in sorted(secrets.items())})


def _details_runtime(cr: Workload) -> str:
    kind = runtime_kind(cr)
    return {"python": "PYTHON", "golang": "GO"}.get(kind, "JAVA")


def _details_log_topic(cr: Workload) -> str | None:
    # With the filebeat sidecar the runtime must not publish logs itself.
    return cr.spec.log_topic if log_topic_agent(cr) == "runtime" else None


def function_details(cr: Workload) -> dict[str, Any]:
    """Pulsar's FunctionDetails for ``cr``, shaped as protojson prints it.

    Default values are left out (proto3), enums are names, 64-bit integers strings.
    """
    s = cr.spec
    details: dict[str, Any] = {
        "tenant": tenant(cr),
        "namespace": pulsar_namespace(cr),
        "name": pulsar_name(cr),
    }
    if isinstance(cr, Function):
        details |= {
            "className": WINDOW_FUNCTION_EXECUTOR if cr.spec.window_config else s.class_name,
            "logTopic": _details_log_topic(cr),
            "processingGuarantees": _processing_guarantee(cr),
            "userConfig": _function_user_config(cr),
            "secretsMap": _secrets_map(cr),
            "runtime": _details_runtime(cr),
            "autoAck": cr.spec.auto_ack is not False,
            "parallelism": _parallelism(cr),
            "source": _drop_zero(_function_source_spec(cr)),
            "sink": _drop_zero(_function_sink_spec(cr)),
            "resources": _resources(cr),
            "retryDetails": _retry_details(cr),
            "runtimeFlags": s.runtime_flags,
            "componentType": "FUNCTION",
            "retainOrdering": cr.spec.retain_ordering,
            "retainKeyOrdering": cr.spec.retain_key_ordering,
        }
    elif isinstance(cr, Source):
        details |= {
            "className": IDENTITY_FUNCTION,
            "logTopic": _details_log_topic(cr),
            "processingGuarantees": _processing_guarantee(cr),
            "userConfig": compact_json(cr.spec.source_config) if cr.spec.source_config is not None else None,
            "secretsMap": _secrets_map(cr),
            "runtime": _details_runtime(cr),
            "autoAck": True,
            "parallelism": _parallelism(cr),
            "source": _drop_zero(_source_source_spec(cr)),
            "sink": _drop_zero(_source_sink_spec(cr)),
            "resources": _resources(cr),
            "runtimeFlags": s.runtime_flags,
            "componentType": "SOURCE",
        }
    else:
        details |= {
            "className": IDENTITY_FUNCTION,
            "logTopic": _details_log_topic(cr),
            "processingGuarantees": _processing_guarantee(cr),
            "secretsMap": _secrets_map(cr),
            "runtime": _details_runtime(cr),
            "autoAck": cr.spec.auto_ack is not False,
            "parallelism": _parallelism(cr),
            "source": _drop_zero(_consumer_source_spec(cr)),
            "sink": _drop_zero(_sink_sink_spec(cr)),
            "resources": _resources(cr),
            "retryDetails": _retry_details(cr),
            "runtimeFlags": s.runtime_flags,
            "componentType": "SINK",
            "retainOrdering": cr.spec.retain_ordering,
            "retainKeyOrdering": cr.spec.retain_key_ordering,
        }
    if details.get("processingGuarantees") == "ATLEAST_ONCE":
        details["processingGuarantees"] = None
    if details.get("runtime") == "JAVA":
        details["runtime"] = None
    for spec_key, enum_key, zero in (
        ("source", "subscriptionType", "SHARED"),
        ("source", "subscriptionPosition", "LATEST"),
    ):
        if details[spec_key].get(enum_key) == zero:
            del details[spec_key][enum_key]
    return _drop_zero(details)


def function_details_json(cr: Workload) -> str:
    """function_details as one compact JSON line."""
    return json.dumps(function_details(cr), separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------- Go instance config


def go_instance_conf(cr: Workload) -> dict[str, Any]:
    """The Go instance configuration (pulsar-function-go's conf.Conf) as JSON fields.

    ``instanceID`` and ``pulsarServiceURL`` hold shell placeholders filled in by the pod.
    """
    s = cr.spec
    consumer = cr if isinstance(cr, Function | Sink) else None
    inp = consumer.spec.input if consumer is not None else None
    out = cr.spec.output if isinstance(cr, Function | Source) else None
    requests = (s.resources.requests if s.resources else None) or {}
    guarantees = ["atleast_once", "atmost_once", "effectively_once", "manual"]
    sub_types = {"SHARED": 0, "FAILOVER": 1, "KEY_SHARED": 2}
    user_config = _function_user_config(cr) if isinstance(cr, Function) else None
    return {
        "pulsarServiceURL": "${brokerServiceURL}",
        "instanceID": f"${{{SHARD_ID}}}",
        "funcID": f"${{{SHARD_ID}}}-{object_uid(cr)}",
        "funcVersion": "0",
        "maxBufTuples": 100,
        "port": GRPC_PORT,
        "clusterName": cluster_name(cr),
        "killAfterIdleMs": 0,
        "tenant": tenant(cr),
        "nameSpace": pulsar_namespace(cr),
        "name": pulsar_name(cr),
        "logTopic": _details_log_topic(cr) or "",
        "processingGuarantees": guarantees.index(s.processing_guarantee or "atleast_once"),
        "secretsMap": "",
        "runtime": 3,
        "autoAck": (consumer.spec.auto_ack is not False) if consumer is not None else True,
        "parallelism": _parallelism(cr),
        "subscriptionType": sub_types[_subscription_type(consumer)] if consumer else 0,
        "timeoutMs": (consumer.spec.timeout or 0) if consumer else 0,
        "subscriptionName": (consumer.spec.subscription_name or "") if consumer else "",
        "cleanupSubscription": bool(consumer.spec.cleanup_subscription) if consumer else False,
        "sourceSpecsTopic": (inp.topics[0] if inp and inp.topics else ""),
        "sourceSchemaType": "",
        "isRegexPatternSubscription": bool(inp and inp.topic_pattern),
        "receiverQueueSize": 0,
        "sinkSpecsTopic": (out.topic or "") if out else "",
        "sinkSchemaType": "",
        "cpu": quantity_value(requests.get("cpu")),
        "ram": quantity_value(requests.get("memory")),
        "disk": quantity_value(requests.get("storage")),
        "maxMessageRetries": (consumer.spec.max_message_retry or 0) if consumer else 0,
        "deadLetterTopic": _dead_letter_topic(consumer) if consumer else "",
        "expectedHealthCheckInterval": -1,
        "userConfig": user_config or "",
        "metricsPort": METRICS_PORT,
    }


def _go_conf_shell_value(cr: Workload) -> str:
    """The Go config JSON as a double-quoted bash word that expands only the placeholders.

    The placeholders are the values of pulsarServiceURL, instanceID (a number: unquoted) and
    funcID, written first; everything after them is escaped, so a ``${...}`` in the user's
    configuration stays as written.
    """

    def escaped(text: str) -> str:
        for ch in ("\\", '"', "$", "`"):
            text = text.replace(ch, "\\" + ch)
        return text

    conf = go_instance_conf(cr)
    for placeholder in ("pulsarServiceURL", "instanceID", "funcID"):
        del conf[placeholder]
    uid = json.dumps(object_uid(cr), ensure_ascii=False)[1:-1]
    head = escaped('{"pulsarServiceURL":"BROKER","instanceID":SHARD,"funcID":"SHARD-')
    head = head.replace("BROKER", "${brokerServiceURL}").replace("SHARD", f"${{{SHARD_ID}}}")
    rest = escaped(json.dumps(conf, separators=(",", ":"), ensure_ascii=False))
    return f'"{head}{escaped(uid)}\\",{rest[1:]}"'


# --------------------------------------------------------------------------- logging


_JAVA_LEVELS = {
    "all": "ALL",
    "debug": "DEBUG",
    "trace": "TRACE",
    "info": "INFO",
    "warn": "WARN",
    "error": "ERROR",
    "fatal": "FATAL",
    "off": "OFF",
}
_PYTHON_LEVELS = {
    "debug": "DEBUG",
    "info": "INFO",
    "warn": "WARNING",
    "error": "ERROR",
    "fatal": "CRITICAL",
}
GO_LEVELS = {
    "debug": "debug",
    "trace": "trace",
    "info": "info",
    "warn": "warn",
    "error": "error",
    "fatal": "fatal",
    "panic": "panic",
}

_LOG4J_CRON = {
    "TimedPolicyWithDaily": "0 0 0 * * ?",
    "TimedPolicyWithWeekly": "0 0 0 ? * 1",
    "TimedPolicyWithMonthly": "0 0 0 1 * ?",
}
_SIZE_MB = {"SizedPolicyWith10MB": 10, "SizedPolicyWith50MB": 50, "SizedPolicyWith100MB": 100}
_PY_TIMED = {
    "TimedPolicyWithDaily": ("D", 1),
    "TimedPolicyWithWeekly": ("W0", 1),
    "TimedPolicyWithMonthly": ("D", 30),
}


def java_log_level(log: RuntimeLogConfig | None) -> str | None:
    if log is None or not log.level:
        return None
    return _JAVA_LEVELS.get(log.level, "INFO")


def _rotate_policy(log: RuntimeLogConfig | None, agent: str) -> str | None:
    """The rotation the log file gets: the one asked for, else 10MB for the filebeat sidecar."""
    if log is not None and log.rotate_policy:
        return log.rotate_policy
    return "SizedPolicyWith10MB" if agent == "sidecar" else None


def java_log_config_path(log: RuntimeLogConfig | None) -> str:
    yaml = log is not None and log.java_log4_j_config_file_type == "yaml"
    return JAVA_LOG_DIR + (JAVA_LOG_FILE_YAML if yaml else JAVA_LOG_FILE_XML)


def _log4j_xml(level: str, json_format: bool, rotate: str | None) -> str:
    layout = (
        '<JsonLayout compact="true" eventEol="true"/>'
        if json_format
        else '<PatternLayout pattern="%d{ISO8601_OFFSET_DATE_TIME_HHMM} [%t] %-5level %logger{36} - %msg%n"/>'
    )
    file_base = "${sys:pulsar.function.log.dir}/${sys:pulsar.function.log.file}"
    rolling = ""
    refs = '<AppenderRef ref="Console"/>'
    if rotate:
        if rotate in _LOG4J_CRON:
            trigger = f'<CronTriggeringPolicy schedule="{_LOG4J_CRON[rotate]}"/>'
        else:
            trigger = f'<SizeBasedTriggeringPolicy size="{_SIZE_MB[rotate]} MB"/>'
        rolling = (
            f'<RollingRandomAccessFile name="RollingFile" fileName="{file_base}.log" '
            f'filePattern="{file_base}-%d{{yyyy-MM-dd-HH-mm}}-%i.log.gz">'
            '<PatternLayout pattern="%d{ISO8601_OFFSET_DATE_TIME_HHMM} [%t] %-5level %logger{36} - %msg%n"/>'
            f"<Policies>{trigger}</Policies>"
            '<DefaultRolloverStrategy max="5"/>'
            "</RollingRandomAccessFile>"
        )
        refs += '<AppenderRef ref="RollingFile"/>'
    return (
        '<Configuration name="pulsar-functions-instance" monitorInterval="30">'
        "<Properties>"
        f'<Property name="pulsar.log.level">{level}</Property>'
        f'<Property name="bk.log.level">{level}</Property>'
        "</Properties>"
        f'<Appenders><Console name="Console" target="SYSTEM_OUT">{layout}</Console>{rolling}</Appenders>'
        "<Loggers>"
        '<Logger name="org.apache.pulsar.functions.runtime.shaded.org.apache.bookkeeper" '
        f'level="${{sys:bk.log.level:-{level}}}" additivity="false">{refs}</Logger>'
        f'<Root level="${{sys:pulsar.log.level:-{level}}}">{refs}</Root>'
        "</Loggers>"
        "</Configuration>"
    )


def _log4j_yaml(level: str, json_format: bool, rotate: str | None) -> str:
    pattern = "%d{ISO8601_OFFSET_DATE_TIME_HHMM} [%t] %-5level %logger{36} - %msg%n"
    layout = (
        "      JsonLayout:\n        compact: true\n        eventEol: true\n"
        if json_format
        else f'      PatternLayout:\n        pattern: "{pattern}"\n'
    )
    file_base = "${sys:pulsar.function.log.dir}/${sys:pulsar.function.log.file}"
    lines = [
        "Configuration:",
        "  name: pulsar-functions-instance",
        "  monitorInterval: 30",
        "  Properties:",
        "    Property:",
        f"      - name: pulsar.log.level\n        value: {level}",
        f"      - name: bk.log.level\n        value: {level}",
        "  Appenders:",
        "    Console:",
        "      name: Console",
        "      target: SYSTEM_OUT",
        layout.rstrip("\n"),
    ]
    refs = ["        - ref: Console"]
    if rotate:
        if rotate in _LOG4J_CRON:
            trigger = f'        CronTriggeringPolicy:\n          schedule: "{_LOG4J_CRON[rotate]}"'
        else:
            trigger = f'        SizeBasedTriggeringPolicy:\n          size: "{_SIZE_MB[rotate]} MB"'
        lines += [
            "    RollingRandomAccessFile:",
            "      name: RollingFile",
            f'      fileName: "{file_base}.log"',
            f'      filePattern: "{file_base}-%d{{yyyy-MM-dd-HH-mm}}-%i.log.gz"',
            f'      PatternLayout:\n        pattern: "{pattern}"',
            "      Policies:",
            trigger,
            "      DefaultRolloverStrategy:\n        max: 5",
        ]
        refs.append("        - ref: RollingFile")
    lines += [
        "  Loggers:",
        "    Logger:",
        "      - name: org.apache.pulsar.functions.runtime.shaded.org.apache.bookkeeper",
        f'        level: "${{sys:bk.log.level:-{level}}}"',
        "        additivity: false",
        "        AppenderRef:",
        *["  " + r for r in refs],
        "    Root:",
        f'      level: "${{sys:pulsar.log.level:-{level}}}"',
        "      AppenderRef:",
        *refs,
    ]
    return "\n".join(lines) + "\n"


def java_log_config_command(log: RuntimeLogConfig | None, agent: str) -> str:
    """Write the instance's log4j2 file (``... && ``), or nothing with a user logConfig."""
    if log is not None and log.log_config is not None:
        return ""
    level = java_log_level(log) or "INFO"
    json_format = log is not None and log.format == "json"
    rotate = _rotate_policy(log, agent)
    yaml = log is not None and log.java_log4_j_config_file_type == "yaml"
    body = (_log4j_yaml if yaml else _log4j_xml)(level, json_format, rotate)
    return f"mkdir -p {JAVA_LOG_DIR} && echo {sq(body)} > {java_log_config_path(log)} && "


def _python_ini(name: str, level: str, json_format: bool, rotate: str | None) -> str:
    formatter = "json" if json_format else "formatter"
    handlers = ["stream_handler"]
    file_handler = ""
    log_file = f"{FUNCTION_LOG_DIR}/{name}.log"
    if rotate in _SIZE_MB:
        handlers.append("rotating_file_handler")
        file_handler = (
            "[handler_rotating_file_handler]\n"
            "class=handlers.RotatingFileHandler\n"
            f"level={level}\nformatter={formatter}\n"
            f"args=({log_file!r}, 'a', {_SIZE_MB[rotate] * 1024 * 1024}, 5)\n\n"
        )
    elif rotate in _PY_TIMED:
        when, interval = _PY_TIMED[rotate]
        handlers.append("timed_rotating_file_handler")
        file_handler = (
            "[handler_timed_rotating_file_handler]\n"
            "class=handlers.TimedRotatingFileHandler\n"
            f"level={level}\nformatter={formatter}\n"
            f"args=({log_file!r}, {when!r}, {interval}, 5)\n\n"
        )
    formatter_section = (
        "[formatter_json]\nformat=%(message)s\nclass=pythonjsonlogger.jsonlogger.JsonFormatter\n"
        if json_format
        else "[formatter_formatter]\nformat=[%(asctime)s] [%(levelname)s] %(filename)s: %(message)s\n"
        "datefmt=%Y-%m-%d %H:%M:%S %z\n"
    )
    return (
        "[loggers]\nkeys=root\n\n"
        f"[handlers]\nkeys={','.join(handlers)}\n\n"
        f"[formatters]\nkeys={formatter}\n\n"
        f"[logger_root]\nlevel={level}\nhandlers={','.join(handlers)}\n\n"
        "[handler_stream_handler]\nclass=StreamHandler\n"
        f"level={level}\nformatter={formatter}\nargs=(sys.stdout,)\n\n"
        f"{file_handler}{formatter_section}"
    )


def python_log_config_command(name: str, log: RuntimeLogConfig | None, agent: str) -> str:
    """Let the configured level apply, then write the logging INI (``... && ``)."""
    # The Python instance forces its own level; comment that line out as Function Mesh does.
    command = "sed -i.bak 's/^  Log.setLevel/#&/' /pulsar/instances/python-instance/log.py && "
    if log is not None and log.log_config is not None:
        return command
    level = _PYTHON_LEVELS.get(log.level, "INFO") if log is not None and log.level else "INFO"
    json_format = log is not None and log.format == "json"
    body = _python_ini(name, level, json_format, _rotate_policy(log, agent))
    return (
        command
        + f"mkdir -p {PYTHON_LOG_DIR} {FUNCTION_LOG_DIR} && "
        + f"echo {sq(body)} > {PYTHON_LOG_DIR}{PYTHON_LOG_FILE} && "
    )


def go_log_level(cr: Workload) -> str | None:
    """LOGGING_LEVEL for the Go runtime (info unless set; none with a user logConfig)."""
    go = cr.spec.golang
    if go is None or (go.log is not None and go.log.log_config is not None):
        return None
    if go.log is not None and go.log.level in GO_LEVELS:
        return GO_LEVELS[go.log.level]
    return "info"


# --------------------------------------------------------------------------- the command


def _shard_prefix() -> str:
    return f"{SHARD_ID}=${{POD_NAME##*-}} && echo shardId=${{{SHARD_ID}}}"


def _shared_args(cr: Workload) -> list[str]:
    return [
        "--instance_id", f"${{{SHARD_ID}}}",
        "--function_id", f"${{{SHARD_ID}}}-{object_uid(cr)}",
        "--function_version", "0",
        "--function_details", sq(function_details_json(cr)),
        "--pulsar_serviceurl", "$brokerServiceURL",
        "--max_buffered_tuples", "100",
        "--port", str(GRPC_PORT),
        "--metrics_port", str(METRICS_PORT),
        "--expected_healthcheck_interval", "0",
        "--cluster_name", word(cluster_name(cr)),
        *client_auth_args(cr.spec.pulsar),
        *tls_args(cr.spec.pulsar),
    ]  # fmt: skip


def _state_args(cr: Workload, *, java: bool) -> list[str]:
    state = cr.spec.stateful_config
    if state is None or state.pulsar is None or not state.pulsar.service_url:
        return []
    args = ["--state_storage_serviceurl", word(state.pulsar.service_url)]
    if java and state.pulsar.java_provider is not None:
        args += ["--state_storage_impl_class", word(state.pulsar.java_provider.class_name)]
    return args


def _java_process(cr: Workload) -> str:
    java = cr.spec.java
    assert java is not None
    log = java.log
    agent = log_topic_agent(cr)
    instance = java.instance_path or JAVA_INSTANCE_PATH
    classpath = (
        f"{instance}:$(echo /pulsar/lib/com.fasterxml.jackson.dataformat-jackson-dataformat-yaml-*.jar)"
        ":$(echo /pulsar/lib/org.yaml-snakeyaml-*.jar)"
    )
    if java.extra_dependencies_dir:
        classpath += f":{java.extra_dependencies_dir}/*"
    name = pulsar_name(cr)
    args = [
        "exec", "java", "-cp", classpath,
        "-Dpulsar.functions.instance.classpath=/pulsar/lib/*",
        f"-Dlog4j.configurationFile={java_log_config_path(log)}",
        f"-Dpulsar.function.log.dir={FUNCTION_LOG_DIR}",
        f"-Dpulsar.function.log.file={word(name)}-${{{SHARD_ID}}}",
        "-Dpulsar.allocator.exit_on_oom=true",
    ]  # fmt: skip
    level = java_log_level(log)
    if level:
        args += [f"-Dpulsar.log.level={level}", f"-Dbk.log.level={level}"]
    args.append("-XX:MaxRAMPercentage=70")
    resources = cr.spec.resources
    memory = None
    if resources is not None:
        memory = (resources.limits or {}).get("memory") or (resources.requests or {}).get("memory")
    if memory is not None:
        # Direct memory gets a fifth of the container's memory (heap 70%, the rest misc).
        args.append(f"-XX:MaxDirectMemorySize={decimal_si(quantity_value(memory) // 5)}")
    args += [
        "-XX:+UseG1GC",
        "-XX:+HeapDumpOnOutOfMemoryError",
        "-XX:HeapDumpPath=/pulsar/tmp/heapdump-%p.hprof",
        "-XX:+ExitOnOutOfMemoryError",
        "-Xlog:gc*:file=/pulsar/logs/gc.log:time,level,tags:filecount=5,filesize=10M",
        *(opt for opt in java.java_opts or [] if opt),
        java.entry_class or JAVA_ENTRY_CLASS,
        "--jar", word(java.jar),
        *_shared_args(cr),
    ]  # fmt: skip
    if isinstance(cr, Function) and (cr.spec.source_config or cr.spec.sink_config):
        args += ["--connectors_directory", CONNECTORS_DIRECTORY]
    if cr.spec.secrets_map:
        args += ["--secrets_provider", JAVA_SECRETS_PROVIDER]
    args += _state_args(cr, java=True)
    if isinstance(cr, Function):
        pending = cr.spec.max_pending_async_requests or DEFAULT_MAX_PENDING_ASYNC_REQUESTS
        args += ["--pending_async_requests", str(pending)]
    return java_log_config_command(log, agent) + " ".join(args)


def _python_process(cr: Workload) -> str:
    python = cr.spec.python
    assert python is not None
    name = pulsar_name(cr)
    args = [
        "exec", "python", PYTHON_INSTANCE_MAIN,
        "--py", word(python.py),
        "--logging_directory", FUNCTION_LOG_DIR,
        "--logging_file", f"{word(name)}-${{{SHARD_ID}}}.log",
        "--logging_config_file", PYTHON_LOG_DIR + PYTHON_LOG_FILE,
        "--install_usercode_dependencies", "true",
        *_shared_args(cr),
    ]  # fmt: skip
    if cr.spec.secrets_map:
        args += ["--secrets_provider", PYTHON_SECRETS_PROVIDER]
    args += _state_args(cr, java=False)
    return python_log_config_command(name, python.log, log_topic_agent(cr)) + " ".join(args)


def _go_process(cr: Workload) -> str:
    go = cr.spec.golang
    assert go is not None
    path = word(go.go)
    return " && ".join(
        [
            f"{GO_CONF_ENV}={_go_conf_shell_value(cr)}",
            f"echo goFunctionConfigs=\"'${{{GO_CONF_ENV}}}'\"",
            f"ls -l {path}",
            f"chmod +x {path}",
            f'exec {path} -instance-conf "${{{GO_CONF_ENV}}}"',
        ]
    )


def _generic_process(cr: Workload) -> str:
    generic = cr.spec.generic_runtime
    assert generic is not None
    args = [
        "exec", "pulsar_rust_instance",
        "--function_file", word(generic.function_file),
        "--language", word(generic.language),
        *_shared_args(cr),
    ]  # fmt: skip
    if cr.spec.secrets_map:
        provider = {
            "python": "secrets_provider.EnvironmentBasedSecretsProvider",
            "nodejs": "EnvironmentBasedSecretsProvider",
        }.get(generic.language)
        if provider:
            args += ["--secrets_provider", provider]
    args += _state_args(cr, java=False)
    return " ".join(args)


def package_location(cr: Workload) -> tuple[str, str] | None:
    """(where the package comes from, where it goes) when a *Location is set."""
    spec = cr.spec
    for runtime, path_attr, location_attr in (
        (spec.java, "jar", "jar_location"),
        (spec.python, "py", "py_location"),
        (spec.golang, "go", "go_location"),
        (spec.generic_runtime, "function_file", "function_file_location"),
    ):
        if runtime is not None:
            location = getattr(runtime, location_attr) or ""
            return (location, getattr(runtime, path_attr)) if location else None
    return None


def instance_command(cr: Workload) -> list[str]:
    """The workload container's command: ``["bash", "-c", "<one line>"]``."""
    kind = runtime_kind(cr)
    process = {
        "java": _java_process,
        "python": _python_process,
        "golang": _go_process,
        "generic": _generic_process,
    }[kind](cr)
    command = f"{_shard_prefix()} && {process}"
    package = package_location(cr)
    if package is not None:
        location, destination = package
        download = download_command(cr, location, destination, generic=kind == "generic")
        glue = " && ls -al && pwd && " if kind == "golang" else " && "
        command = download + glue + command
    return ["sh" if kind == "generic" else "bash", "-c", command]
