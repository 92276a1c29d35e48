"""Spec pieces shared by Function, Source and Sink (Function Mesh's common.go).

JSON names, shapes and meanings follow Function Mesh's v1alpha1 Go types, so YAML
written for Function Mesh parses unchanged. The descriptions are ours.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from fmesh_events.models.base import (
    Affinity,
    Bool,
    FreeForm,
    InitContainers,
    Int32,
    Int64,
    LabelMap,
    MetricSpecs,
    NonNegativeQuantity,
    OptionalTopicName,
    PodSecurityContext,
    Probe,
    Quantity,
    Rule,
    Sidecars,
    SpecModel,
    StringMap,
    Tolerations,
    TopicName,
    Volumes,
    check_label_keys,
    check_topic_keys,
    core,
    quantity,
)

ProcessingGuarantee = Literal["atleast_once", "atmost_once", "effectively_once", "manual"]
SubscriptionPosition = Literal["latest", "earliest"]
CompressionType = Literal["NONE", "LZ4", "ZLIB", "ZSTD", "SNAPPY"]
LogTopicAgent = Literal["runtime", "sidecar"]
LogLevel = Literal["off", "trace", "debug", "info", "warn", "error", "fatal", "all", "panic"]
RotatePolicy = Literal[
    "TimedPolicyWithDaily",
    "TimedPolicyWithWeekly",
    "TimedPolicyWithMonthly",
    "SizedPolicyWith10MB",
    "SizedPolicyWith50MB",
    "SizedPolicyWith100MB",
]
LogFormat = Literal["json", "text"]
JavaLog4JConfigFileType = Literal["yaml", "xml", "ini"]
WindowProcessingGuarantee = Literal["ATLEAST_ONCE", "ATMOST_ONCE"]
BuiltinHPARule = Literal[
    "AverageUtilizationCPUPercent80",
    "AverageUtilizationCPUPercent50",
    "AverageUtilizationCPUPercent20",
    "AverageUtilizationMemoryPercent80",
    "AverageUtilizationMemoryPercent50",
    "AverageUtilizationMemoryPercent20",
]
PVCRetention = Literal["Retain", "Delete"]

# Bounds that keep the estimated cost of CEL rules low (the API server refuses rules
# whose worst case is too expensive); far above anything a real spec needs.
MAX_TOPICS = 500
MAX_RESOURCES = 32


# --------------------------------------------------------------------------- messaging


class TLSConfig(SpecModel):
    """TLS settings for the connection to Pulsar, with the CA certificate from a Secret."""

    enabled: Bool | None = Field(None, description="Connect to Pulsar over TLS.")
    allow_insecure: Bool | None = Field(
        None, description="Accept a broker certificate that cannot be verified."
    )
    hostname_verification: Bool | None = Field(
        None, description="Check that the broker certificate matches the broker host name."
    )
    cert_secret_name: str | None = Field(
        None, description="Name of the Secret that holds the trusted CA certificate."
    )
    cert_secret_key: str | None = Field(
        None, description="Key inside that Secret whose value is the CA certificate."
    )


class OAuth2Config(SpecModel):
    """OAuth 2.0 client-credentials authentication, with the key file from a Secret."""

    audience: str = Field(description="Audience requested in the access token.")
    issuer_url: str = Field(alias="issuerUrl", description="URL of the OAuth 2.0 issuer.")
    scope: str | None = Field(None, description="Scope requested in the access token.")
    key_secret_name: str = Field(
        description="Name of the Secret that holds the client credentials file."
    )
    key_secret_key: str = Field(
        description="Key inside that Secret whose value is the credentials file (e.g. auth.json)."
    )


class GenericAuth(SpecModel):
    """Any Pulsar client authentication plugin, given by class name and parameters."""

    client_authentication_plugin: str = Field(
        description="Class name of the Pulsar client authentication plugin."
    )
    client_authentication_parameters: str = Field(
        description="Parameter string handed to that plugin."
    )


class AuthConfig(SpecModel):
    """How the workload authenticates to Pulsar (replaces authSecret)."""

    oauth2_config: OAuth2Config | None = Field(
        None, alias="oauth2Config", description="OAuth 2.0 client-credentials authentication."
    )
    generic_auth: GenericAuth | None = Field(
        None, description="Authentication through any Pulsar client plugin."
    )


class PulsarMessaging(SpecModel):
    """Where the Pulsar cluster is and how to reach it."""

    pulsar_config: str = Field(
        min_length=1,
        description="Name of the ConfigMap with the cluster's URLs (webServiceURL, "
        "brokerServiceURL); its keys become environment variables of the pod.",
    )
    auth_secret: str | None = Field(
        None,
        description="Name of a Secret with clientAuthenticationPlugin and "
        "clientAuthenticationParameters (older form of authConfig).",
    )
    tls_secret: str | None = Field(
        None,
        description="Name of a Secret with use_tls, tls_allow_insecure, "
        "hostname_verification_enabled and tls_trust_cert_path (older form of tlsConfig).",
    )
    tls_config: TLSConfig | None = Field(None, description="TLS settings; replaces tlsSecret.")
    auth_config: AuthConfig | None = Field(
        None, description="Authentication settings; replaces authSecret."
    )
    cleanup_auth_config: AuthConfig | None = Field(
        None,
        description="Authentication used by the subscription clean-up job, when it must "
        "differ from authConfig.",
    )


# --------------------------------------------------------------------------- state


class StateStoreJavaProvider(SpecModel):
    """A custom state store implementation for the Java runtime."""

    class_name: str = Field(
        description="Java class implementing the Pulsar Functions StateStoreProvider interface."
    )
    config: FreeForm | None = Field(None, description="Configuration handed to that provider.")


class PulsarStateStore(SpecModel):
    """The state store behind the Pulsar Functions state API."""

    service_url: str = Field(
        alias="serviceUrl",
        min_length=1,
        description="URL of the state storage service (by default BookKeeper's table service).",
    )
    java_provider: StateStoreJavaProvider | None = Field(
        None, description="Use another state store implementation (Java runtime only)."
    )


class StatefulConfig(SpecModel):
    """State storage for stateful functions."""

    pulsar: PulsarStateStore | None = Field(None, description="Pulsar's state store settings.")


# --------------------------------------------------------------------------- runtimes


class LogConfigRef(SpecModel):
    """A logging configuration file kept in a ConfigMap."""

    name: str = Field(description="Name of the ConfigMap.")
    key: str = Field(description="Key inside the ConfigMap whose value is the file.")


class RuntimeLogConfig(SpecModel):
    """Logging of the function instance."""

    level: LogLevel | None = Field(
        None,
        description="Log level; off and all are Java only, panic is Go only.",
    )
    rotate_policy: RotatePolicy | None = Field(
        None, description="When the log file rolls over (by time or by size)."
    )
    format: LogFormat | None = Field(None, description="Log line format.")
    log_config: LogConfigRef | None = Field(
        None, description="A complete logging configuration file to use instead."
    )
    java_log4_j_config_file_type: JavaLog4JConfigFileType | None = Field(
        None,
        alias="javaLog4JConfigFileType",
        description="Format of the Log4j 2 file given in logConfig (Java only).",
    )


class JavaRuntime(SpecModel):
    """Run the code on the JVM from a JAR or NAR file."""

    jar: str = Field(min_length=1, description="Path of the JAR (or NAR) file inside the pod.")
    jar_location: str | None = Field(
        None,
        description="Where to download the file from: a Pulsar package URL "
        "(function://, sink://, source://), an http(s) URL or a path in Pulsar; "
        "empty when the file is already in the image.",
    )
    extra_dependencies_dir: str | None = Field(
        None, description="Directory of extra JARs added to the class path."
    )
    log: RuntimeLogConfig | None = Field(None, description="Logging settings.")
    java_opts: list[str] | None = Field(None, description="Extra options for the java command.")
    instance_path: str | None = Field(
        None, description="Path of the Java instance JAR inside the runner image."
    )
    entry_class: str | None = Field(None, description="Main class that starts the Java instance.")


class PythonRuntime(SpecModel):
    """Run the code with the Python instance."""

    py: str = Field(
        min_length=1, description="Path of the Python file, wheel or zip inside the pod."
    )
    py_location: str | None = Field(
        None, description="Where to download the file from (same forms as java.jarLocation)."
    )
    log: RuntimeLogConfig | None = Field(None, description="Logging settings.")


class GoRuntime(SpecModel):
    """Run a Go executable built with the Pulsar Go functions library."""

    go: str = Field(min_length=1, description="Path of the Go executable inside the pod.")
    go_location: str | None = Field(
        None, description="Where to download the executable from (same forms as java.jarLocation)."
    )
    log: RuntimeLogConfig | None = Field(None, description="Logging settings.")


class GenericRuntime(SpecModel):
    """Run the code with a runtime for another language."""

    function_file: str = Field(min_length=1, description="Path of the code file inside the pod.")
    language: str = Field(
        min_length=1, description="Language of the code, which picks the runtime."
    )
    function_file_location: str | None = Field(
        None, description="Where to download the file from (same forms as java.jarLocation)."
    )


# --------------------------------------------------------------------------- input/output


class CryptoSecret(SpecModel):
    """A key file for end-to-end encryption, mounted from a Secret."""

    secret_name: str = Field(description="Name of the Secret.")
    secret_key: str = Field(description="Key inside the Secret whose value is the key file.")
    as_volume: str | None = Field(None, description="Path where the key file is mounted.")


class CryptoConfig(SpecModel):
    """End-to-end message encryption settings."""

    crypto_key_reader_class_name: str | None = Field(
        None, description="Class that reads the encryption keys."
    )
    crypto_key_reader_config: StringMap | None = Field(
        None, description="Configuration handed to the key reader."
    )
    encryption_keys: list[str] | None = Field(
        None, description="Names of the keys used to encrypt produced messages."
    )
    producer_crypto_failure_action: str | None = Field(
        None, description="What a producer does when encryption fails (FAIL or SEND)."
    )
    consumer_crypto_failure_action: str | None = Field(
        None, description="What a consumer does when decryption fails (FAIL, DISCARD or CONSUME)."
    )
    crypto_secrets: list[CryptoSecret] | None = Field(
        None, description="Secrets holding the key files, mounted into the pod."
    )


class ConsumerConfig(SpecModel):
    """How one input topic is consumed."""

    schema_type: str | None = Field(None, description="Schema type of the topic.")
    serde_class_name: str | None = Field(
        None, alias="serdeClassname", description="SerDe class used to decode messages."
    )
    is_regex_pattern: Bool | None = Field(
        None, description="The topic name of this entry is a regular expression."
    )
    schema_properties: StringMap | None = Field(None, description="Properties of the schema.")
    consumer_properties: StringMap | None = Field(
        None, description="Extra properties of the Pulsar consumer."
    )
    receiver_queue_size: Int32 | None = Field(
        None, ge=0, description="Size of the consumer's receiver queue."
    )
    crypto_config: CryptoConfig | None = Field(None, description="Decryption settings.")


class InputConf(SpecModel):
    """The topics a function or sink reads."""

    type_class_name: str | None = Field(
        None, description="Java type of the input messages (e.g. java.lang.String, [B for bytes)."
    )
    topics: list[TopicName] | None = Field(None, max_length=MAX_TOPICS, description="Input topics.")
    topic_pattern: TopicName | None = Field(
        None,
        description="Regular expression over the topics of one namespace "
        "(persistent://tenant/namespace/regex); every matching topic is an input.",
    )
    custom_serde_sources: StringMap | None = Field(
        None, description="Input topics, each with the SerDe class that decodes it."
    )
    custom_schema_sources: StringMap | None = Field(
        None, description="Input topics, each with the schema type or class that decodes it."
    )
    source_specs: dict[str, ConsumerConfig] | None = Field(
        None, description="Input topics (or patterns), each with its own consumer settings."
    )

    _topic_keys = field_validator(
        "custom_serde_sources", "custom_schema_sources", "source_specs"
    )(check_topic_keys)


class ProducerConfig(SpecModel):
    """Settings of the producer that writes the output topic."""

    max_pending_messages: Int32 | None = Field(
        None, ge=0, description="Most messages waiting for an acknowledgment from the broker."
    )
    max_pending_messages_across_partitions: Int32 | None = Field(
        None, ge=0, description="Same limit, summed over all partitions."
    )
    use_thread_local_producers: Bool | None = Field(
        None, description="Use one producer per thread."
    )
    crypto_config: CryptoConfig | None = Field(None, description="Encryption settings.")
    batch_builder: str | None = Field(
        None, description="How messages are batched (DEFAULT or KEY_BASED)."
    )
    compression_type: CompressionType | None = Field(
        None, description="Compression of produced messages."
    )


class OutputConf(SpecModel):
    """The topic a function or source writes."""

    type_class_name: str | None = Field(
        None, description="Java type of the output messages (e.g. java.lang.String, [B for bytes)."
    )
    topic: OptionalTopicName | None = Field(None, description="Output topic.")
    sink_serde_class_name: str | None = Field(
        None, description="SerDe class used to encode output messages."
    )
    sink_schema_type: str | None = Field(None, description="Schema type of the output topic.")
    producer_conf: ProducerConfig | None = Field(None, description="Producer settings.")
    custom_schema_sinks: StringMap | None = Field(
        None, description="Output topics, each with the schema type or class that encodes it."
    )

    _topic_keys = field_validator("custom_schema_sinks")(check_topic_keys)


class SecretRef(SpecModel):
    """A value taken from a Kubernetes Secret, made available to the user code."""

    path: str = Field(min_length=1, description="Name of the Secret.")
    key: str = Field(min_length=1, description="Key inside the Secret.")


class WindowConfig(SpecModel):
    """Run the function over windows of messages instead of one message at a time."""

    cel_rules = (
        Rule(
            cel="has(self.windowLengthCount) != has(self.windowLengthDurationMs)",
            message="exactly one of windowLengthCount or windowLengthDurationMs must be set",
            check=lambda s: (
                (s.window_length_count is None) != (s.window_length_duration_ms is None)
            ),
        ),
    )

    actual_window_function_class_name: str = Field(
        description="Class of the user's window function."
    )
    window_length_count: Int32 | None = Field(
        None, ge=1, description="Window length as a number of messages."
    )
    window_length_duration_ms: Int64 | None = Field(
        None, ge=1, description="Window length as a duration in milliseconds."
    )
    sliding_interval_count: Int32 | None = Field(
        None, ge=1, description="Slide the window every this many messages."
    )
    sliding_interval_duration_ms: Int64 | None = Field(
        None, ge=1, description="Slide the window every this many milliseconds."
    )
    late_data_topic: OptionalTopicName | None = Field(
        None, description="Topic that receives messages arriving after their window closed."
    )
    max_lag_ms: Int64 | None = Field(
        None, ge=1, description="Longest delay accepted for out-of-order messages, in milliseconds."
    )
    watermark_emit_interval_ms: Int64 | None = Field(
        None, ge=1, description="How often the watermark advances, in milliseconds."
    )
    timestamp_extractor_class_name: str | None = Field(
        None, description="Class that reads the event time of a message."
    )
    processing_guarantees: WindowProcessingGuarantee | None = Field(
        None, description="Delivery guarantee of the windowed function."
    )


# --------------------------------------------------------------------------- resources, env


class ResourceClaim(SpecModel):
    """A dynamic resource claim of the pod used by the container."""

    name: str = Field(description="Name of an entry of the pod's resourceClaims.")
    request: str | None = Field(None, description="Name of one request inside that claim.")


_STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def _resource_names(value: dict[str, Any] | None) -> dict[str, Any] | None:
    for name in value or {}:
        if name not in _STANDARD_RESOURCES and not name.startswith("hugepages-") \
                and "/" not in name:
            raise ValueError(
                f"{name!r} is not a resource a container can ask for: use cpu, memory, "
                "ephemeral-storage, hugepages-<size> or a qualified name such as nvidia.com/gpu")
    return value


class ResourceRequirements(SpecModel):
    """CPU, memory and other resources of the workload's container."""

    limits: dict[str, NonNegativeQuantity] | None = Field(
        None,
        max_length=MAX_RESOURCES,
        description="Most of each resource the container may use (e.g. cpu: 500m).",
    )
    requests: dict[str, NonNegativeQuantity] | None = Field(
        None,
        max_length=MAX_RESOURCES,
        description="Resources reserved for the container (e.g. memory: 1Gi); at most "
        "the limit of the same resource.",
    )
    claims: list[ResourceClaim] | None = Field(
        None,
        description="Dynamic resource claims used by the container.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    _names = field_validator("limits", "requests")(_resource_names)

    @model_validator(mode="after")
    def _requests_within_limits(self) -> ResourceRequirements:
        # Checked here, not by a CEL rule: comparing quantities of a map with keys of any
        # length costs more than the API server's rule budget (inside a mesh, 100x more).
        limits = self.limits or {}
        for name, requested in (self.requests or {}).items():
            low = quantity(requested)
            high = quantity(limits.get(name)) if name in limits else None
            if low is not None and high is not None and low > high:
                raise ValueError(f"requests.{name} ({requested}) is more than limits.{name} "
                                 f"({limits[name]}); a request must be at most its limit")
        return self


class KeySelector(SpecModel):
    """A key of a ConfigMap or Secret."""

    name: str | None = Field(None, description="Name of the ConfigMap or Secret.")
    key: str = Field(description="The key to read.")
    optional: Bool | None = Field(
        None, description="Start the container even if the object or key is missing."
    )


class ObjectFieldSelector(SpecModel):
    """A field of the pod."""

    api_version: Literal["v1"] | None = Field(
        None, description="API version of fieldPath (v1, the default)."
    )
    field_path: str = Field(description="Path of the field, e.g. metadata.name.")


class ResourceFieldSelector(SpecModel):
    """A resource request or limit of a container."""

    container_name: str | None = Field(None, description="Container to read (default: this one).")
    resource: str = Field(description="Resource to read, e.g. limits.cpu.")
    divisor: Quantity | None = Field(None, description="Unit of the exposed value (default 1).")


class EnvVarSource(SpecModel):
    """Where an environment variable's value comes from."""

    config_map_key_ref: KeySelector | None = Field(None, description="A key of a ConfigMap.")
    secret_key_ref: KeySelector | None = Field(None, description="A key of a Secret.")
    field_ref: ObjectFieldSelector | None = Field(None, description="A field of the pod.")
    resource_field_ref: ResourceFieldSelector | None = Field(
        None, description="A resource request or limit of a container."
    )


class EnvVar(SpecModel):
    """An environment variable of the workload's container."""

    name: str = Field(min_length=1, description="Name of the variable.")
    value: str | None = Field(None, description="Literal value.")
    value_from: EnvVarSource | None = Field(None, description="Take the value from elsewhere.")


class LocalObjectReference(SpecModel):
    """A reference to an object in the same namespace."""

    name: str = Field(description="Name of the object.")


# --------------------------------------------------------------------------- autoscaling


class HPAScalingPolicy(SpecModel):
    """One limit on how fast replicas may change."""

    type: Literal["Pods", "Percent"] = Field(
        description="Pods: change by at most `value` pods; Percent: by at most `value` percent."
    )
    # Bounds of a required field go inside Annotated: Field(ge=...) next to Int32's own
    # bounds would lose to them, in validation and in the CRD alike.
    value: Annotated[Int32, Field(ge=1)] = Field(description="Size of the allowed change.")
    period_seconds: Annotated[Int32, Field(ge=1, le=1800)] = Field(
        description="Length of the window in which the change is counted."
    )


class HPAScalingRules(SpecModel):
    """Scaling rules for one direction, as in the HorizontalPodAutoscaler API."""

    stabilization_window_seconds: Int32 | None = Field(
        None,
        ge=0,
        le=3600,
        description="Recommendations of this many past seconds are considered and the most "
        "conservative one is used, to avoid flapping.",
    )
    select_policy: Literal["Max", "Min", "Disabled"] | None = Field(
        None,
        description="Which policy applies when several do: the one allowing the largest "
        "change (Max), the smallest (Min), or none: no scaling in this direction (Disabled).",
    )
    policies: list[HPAScalingPolicy] | None = Field(
        None,
        max_length=10,
        description="Limits on the rate of change.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    tolerance: NonNegativeQuantity | None = Field(
        None,
        description="Relative difference between current and desired metric below which no "
        "scaling happens (e.g. '0.1').",
    )


class HPABehavior(SpecModel):
    """Scaling behavior, same shape as HorizontalPodAutoscalerBehavior (autoscaling/v2)."""

    scale_up: HPAScalingRules | None = Field(None, description="Rules when adding replicas.")
    scale_down: HPAScalingRules | None = Field(None, description="Rules when removing replicas.")


class CPUAutoscaling(SpecModel):
    """Scale on CPU use."""

    target_utilization_percent: Annotated[Int32, Field(ge=1, le=100)] = Field(
        description="Average CPU use, in percent of the CPU request, to keep the pods at.",
    )


class MemoryAutoscaling(SpecModel):
    """Scale on memory use, as an HPA Resource metric with a Utilization target."""

    target_utilization_percent: Annotated[Int32, Field(ge=1, le=100)] = Field(
        description="Average memory use, in percent of the memory request, to keep the pods at.",
    )


class BacklogAutoscaling(SpecModel):
    """Scale on the backlog of the workload's subscription on its input topics."""

    target_per_replica: Annotated[Int64, Field(ge=1)] = Field(
        description="Messages of backlog each replica should have to work through."
    )
    activation_threshold: Int64 | None = Field(
        None,
        ge=0,
        description="Backlog at or below which a workload at minReplicas (e.g. 0) is not "
        "scaled up (default 0).",
    )


class AutoscalingSpec(SpecModel):
    """Event-driven autoscaling by fmesh-events between minReplicas and maxReplicas.

    The desired replica count is the largest of the CPU, memory and backlog recommendations.
    """

    cel_rules = (
        Rule(
            cel="has(self.cpu) || has(self.memory) || has(self.backlog)",
            message="at least one of cpu, memory or backlog must be set",
            check=lambda s: s.cpu is not None or s.memory is not None or s.backlog is not None,
        ),
    )

    cpu: CPUAutoscaling | None = Field(None, description="Scale on CPU use.")
    memory: MemoryAutoscaling | None = Field(
        None, description="Scale on memory use (replaces a memory rule of pod.builtinAutoscaler "
        "or pod.autoScalingMetrics).",
    )
    backlog: BacklogAutoscaling | None = Field(
        None, description="Scale on the input subscription's backlog."
    )
    behavior: HPABehavior | None = Field(
        None, description="Stabilization windows and rate limits for scaling up and down."
    )


# --------------------------------------------------------------------------- pod policy


class Liveness(SpecModel):
    """The liveness probe the operator adds to the workload's container."""

    period_seconds: Int32 | None = Field(None, ge=0, description="Seconds between two probes.")
    initial_delay_seconds: Int32 | None = Field(
        None,
        ge=0,
        description="Seconds to wait after start before the first probe (downloads take time).",
    )
    success_threshold: Int32 | None = Field(
        None,
        ge=0,
        le=1,
        description="Successes needed after a failure to count as alive (1; 0 means 1).",
    )
    failure_threshold: Int32 | None = Field(
        None, ge=0, description="Failures in a row after which the container is restarted."
    )


class VPASpec(SpecModel):
    """A VerticalPodAutoscaler for the workload (not to be combined with horizontal scaling)."""

    update_policy: FreeForm | None = Field(
        None,
        description="How recommendations are applied: an autoscaling.k8s.io/v1 PodUpdatePolicy.",
    )
    resource_policy: FreeForm | None = Field(
        None,
        description="Bounds of the recommendations per container: an autoscaling.k8s.io/v1 "
        "PodResourcePolicy.",
    )


_CPU_RULES = "r.startsWith('AverageUtilizationCPU')"
_MEMORY_RULES = "r.startsWith('AverageUtilizationMemory')"


class PodPolicy(SpecModel):
    """Settings of the pods that run the workload."""

    cel_rules = (
        Rule(
            cel=(
                "!has(self.builtinAutoscaler) || "
                f"(self.builtinAutoscaler.filter(r, {_CPU_RULES}).size() <= 1 && "
                f"self.builtinAutoscaler.filter(r, {_MEMORY_RULES}).size() <= 1)"
            ),
            message="builtinAutoscaler may hold at most one CPU rule and one memory rule",
            check=lambda s: (
                s.builtin_autoscaler is None
                or (
                    sum(r.startswith("AverageUtilizationCPU") for r in s.builtin_autoscaler) <= 1
                    and sum(r.startswith("AverageUtilizationMemory") for r in s.builtin_autoscaler)
                    <= 1
                )
            ),
        ),
    )

    labels: LabelMap | None = Field(None, description="Labels added to the pods.")
    node_selector: LabelMap | None = Field(
        None, description="Node labels a node must have to run the pods."
    )
    affinity: Affinity | None = Field(
        None, description=core("Affinity", "Scheduling constraints of the pods.")
    )
    tolerations: Tolerations | None = Field(
        None, description=core("Toleration", "Taints the pods tolerate.")
    )
    annotations: StringMap | None = Field(None, description="Annotations added to the pods.")
    security_context: PodSecurityContext | None = Field(
        None, description=core("PodSecurityContext", "Security settings of the whole pod.")
    )
    termination_grace_period_seconds: Int64 | None = Field(
        None, ge=0, description="Seconds a pod gets to stop before it is killed."
    )
    volumes: Volumes | None = Field(
        None,
        description=core("Volume", "Extra volumes of the pods (mount them with volumeMounts)."),
    )
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        None, description="Secrets used to pull the images."
    )
    init_containers: InitContainers | None = Field(
        None,
        description=core("Container", "Containers run to completion before the workload starts."),
    )
    sidecars: Sidecars | None = Field(
        None, description=core("Container", "Extra containers running beside the workload.")
    )
    service_account_name: str | None = Field(None, description="ServiceAccount the pods run as.")
    builtin_autoscaler: list[BuiltinHPARule] | None = Field(
        None,
        max_length=6,
        description="Ready-made HPA rules (Function Mesh): average CPU or memory use of 80, "
        "50 or 20 percent; at most one of each kind.",
    )
    auto_scaling_metrics: MetricSpecs | None = Field(
        None,
        description=core(
            "autoscaling/v2 MetricSpec",
            "Metrics for a HorizontalPodAutoscaler (Function Mesh); the largest "
            "recommendation wins.",
        ),
    )
    auto_scaling_behavior: HPABehavior | None = Field(
        None, description="Scaling behavior of that HorizontalPodAutoscaler."
    )
    vpa: VPASpec | None = Field(None, description="Run a VerticalPodAutoscaler for the pods.")
    env: list[EnvVar] | None = Field(
        None, description="Environment variables of the workload's container."
    )
    liveness: Liveness | None = Field(
        None, description="Add a liveness probe to the workload's container."
    )
    disable_default_affinity: Bool | None = Field(
        None,
        description="Do not add the default preference to spread pods over nodes.",
    )
    startup_probe: Probe | None = Field(
        None, description=core("Probe", "Startup probe of the workload's container.")
    )

    _label_keys = field_validator("labels", "node_selector")(check_label_keys)


class PVCRetentionPolicy(SpecModel):
    """What happens to the volumes made from volumeClaimTemplates."""

    when_deleted: PVCRetention | None = Field(
        None, description="When the workload is deleted: Retain or Delete the claims."
    )
    when_scaled: PVCRetention | None = Field(
        None, description="When replicas are removed: Retain or Delete their claims."
    )


CRON_TRIGGERER = "org.apache.pulsar.io.batchdiscovery.CronTriggerer"
CRON_KEY = "__CRON__"


class BatchSourceConfig(SpecModel):
    """Run a source as a batch source, triggered by a discovery triggerer."""

    discovery_triggerer_class_name: str = Field(
        min_length=1, description="Class that decides when new data is discovered."
    )
    discovery_triggerer_config: FreeForm | None = Field(
        None,
        description="Configuration handed to the triggerer; Pulsar's CronTriggerer reads a "
        "Quartz cron expression (6 or 7 fields) from its __CRON__ key.",
    )

    @field_validator("discovery_triggerer_config")
    @classmethod
    def _cron(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        if info.data.get("discovery_triggerer_class_name") != CRON_TRIGGERER:
            return value
        cron = (value or {}).get(CRON_KEY)
        if not isinstance(cron, str) or len(cron.split()) not in (6, 7):
            raise ValueError(
                f"{CRON_KEY} must be a Quartz cron expression of 6 or 7 fields for "
                f"{CRON_TRIGGERER} (e.g. '0 0 2 * * ?'), got {cron!r}")
        return value

    @model_validator(mode="after")
    def _cron_present(self) -> BatchSourceConfig:
        if self.discovery_triggerer_class_name == CRON_TRIGGERER and \
                self.discovery_triggerer_config is None:
            raise ValueError(f"discoveryTriggererConfig.{CRON_KEY} is required for "
                             f"{CRON_TRIGGERER}: a Quartz cron expression such as '0 0 2 * * ?'")
        return self
