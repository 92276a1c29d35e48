"""Fields and rules that Function, Source and Sink specs have in common."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from fmesh_events.models.base import (
    Bool,
    ImageName,
    ImagePullPolicy,
    Int32,
    OptionalTopicName,
    Rule,
    SpecModel,
    VolumeMounts,
    core,
    is_set,
)
from fmesh_events.models.common import (
    AutoscalingSpec,
    GenericRuntime,
    GoRuntime,
    InputConf,
    JavaRuntime,
    LogTopicAgent,
    PodPolicy,
    ProcessingGuarantee,
    PulsarMessaging,
    PythonRuntime,
    ResourceRequirements,
    SecretRef,
    StatefulConfig,
    SubscriptionPosition,
)

_RUNTIMES = ("java", "python", "golang", "genericRuntime")

WORKLOAD_RULES: tuple[Rule, ...] = (
    Rule(
        cel="!has(self.minReplicas) || !has(self.maxReplicas) || "
        "self.minReplicas <= self.maxReplicas",
        message="{p}minReplicas must not be greater than {p}maxReplicas",
        check=lambda s: (
            s.min_replicas is None or s.max_replicas is None or s.min_replicas <= s.max_replicas
        ),
    ),
    Rule(
        cel=" + ".join(f"(has(self.{r}) ? 1 : 0)" for r in _RUNTIMES) + " == 1",
        message="exactly one runtime must be set: {p}java, {p}python, {p}golang "
        "or {p}genericRuntime",
        check=lambda s: (
            sum(x is not None for x in (s.java, s.python, s.golang, s.generic_runtime)) == 1
        ),
    ),
    Rule(
        cel="!(has(self.java) || has(self.python)) || "
        "(has(self.className) && size(self.className) > 0)",
        message="{p}className is required when {p}java or {p}python is set",
        check=lambda s: (s.java is None and s.python is None) or bool(s.class_name),
    ),
    Rule(
        cel="!has(self.statefulConfig) || !has(self.golang)",
        message="{p}statefulConfig is not supported with {p}golang",
        check=lambda s: s.stateful_config is None or s.golang is None,
    ),
    Rule(
        cel="!has(self.autoscaling) || has(self.maxReplicas)",
        message="{p}maxReplicas is required when {p}autoscaling is set",
        check=lambda s: s.autoscaling is None or s.max_replicas is not None,
    ),
)

_HAS_INPUT_TOPIC = (
    "has(self.input) && ("
    "(has(self.input.topics) && size(self.input.topics) > 0) || "
    "(has(self.input.topicPattern) && size(self.input.topicPattern) > 0) || "
    "(has(self.input.customSerdeSources) && size(self.input.customSerdeSources) > 0) || "
    "(has(self.input.customSchemaSources) && size(self.input.customSchemaSources) > 0) || "
    "(has(self.input.sourceSpecs) && size(self.input.sourceSpecs) > 0))"
)
_INPUT_MESSAGE = (
    "{p}input must name at least one topic (topics, topicPattern, customSerdeSources, "
    "customSchemaSources or sourceSpecs)"
)


def has_input_topic(spec: Any) -> bool:
    """Python twin of the CEL test that the input names at least one topic."""
    i = spec.input
    return i is not None and any(
        (i.topics, i.topic_pattern, i.custom_serde_sources, i.custom_schema_sources, i.source_specs)
    )


INPUT_RULE = Rule(cel=_HAS_INPUT_TOPIC, message=_INPUT_MESSAGE, check=has_input_topic)
"""A Sink must read at least one topic."""

# Name limits. A Function, Source or Sink X runs as the StatefulSet X-<component> with the
# headless Service X-<component>-headless (Function Mesh's names). The Service name must be a
# DNS-1035 label (a letter first, no dots, at most 63 characters), and every pod carries the
# label controller-revision-hash=<statefulset>-<hash of up to 10 characters>, a label value
# of at most 63: so X is at most 63 - 11 - len("-<component>") characters. Longer names are
# stored by the API server and then fail half-way through (StatefulSet made, Service refused).
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
_NAME = re.compile(NAME_PATTERN)
MAX_NAME_LENGTH = {"Function": 63 - 11 - len("-function"), "Source": 63 - 11 - len("-source"),
                   "Sink": 63 - 11 - len("-sink")}


def name_rule(kind: str) -> Rule:
    """The root rule on metadata.name of a Function, Source or Sink."""
    most = MAX_NAME_LENGTH[kind]
    return Rule(
        cel=f"size(self.metadata.name) <= {most} && self.metadata.name.matches('{NAME_PATTERN}')",
        message=f"metadata.name must be at most {most} characters of a-z, 0-9 and '-', "
        f"starting with a letter (it names the StatefulSet, its pods and its headless "
        f"Service)",
        check=lambda r: name_fits(r.metadata.get("name"), most),
    )


def name_fits(name: Any, most: int) -> bool:
    # Objects built in code (a mesh's children before they are stored) may have no name yet.
    return name is None or (isinstance(name, str) and len(name) <= most
                            and _NAME.match(name) is not None)


FUNCTION_INPUT_RULE = Rule(
    cel=f"has(self.sourceConfig) || ({_HAS_INPUT_TOPIC})",
    message=_INPUT_MESSAGE + " unless {p}sourceConfig is set",
    check=lambda s: s.source_config is not None or has_input_topic(s),
)
"""A Function reads at least one topic, or a source connector."""

CONSUMER_RULES: tuple[Rule, ...] = (
    Rule(
        cel="!(has(self.retainOrdering) && self.retainOrdering && "
        "has(self.retainKeyOrdering) && self.retainKeyOrdering)",
        message="{p}retainOrdering and {p}retainKeyOrdering cannot both be true",
        check=lambda s: not (s.retain_ordering and s.retain_key_ordering),
    ),
    Rule(
        cel="!has(self.processingGuarantee) || self.processingGuarantee != 'effectively_once' || "
        "((!has(self.timeout) || self.timeout == 0) && "
        "(!has(self.maxMessageRetry) || self.maxMessageRetry == 0) && "
        "(!has(self.retainKeyOrdering) || !self.retainKeyOrdering))",
        message="{p}timeout, {p}maxMessageRetry and {p}retainKeyOrdering cannot be used with "
        "{p}processingGuarantee effectively_once",
        check=lambda s: (
            s.processing_guarantee != "effectively_once"
            or not (is_set(s.timeout) or is_set(s.max_message_retry) or s.retain_key_ordering)
        ),
    ),
    Rule(
        cel="!has(self.deadLetterTopic) || size(self.deadLetterTopic) == 0 || "
        "(has(self.maxMessageRetry) && self.maxMessageRetry > 0)",
        message="{p}deadLetterTopic needs {p}maxMessageRetry greater than 0",
        check=lambda s: (
            not s.dead_letter_topic or (s.max_message_retry is not None and s.max_message_retry > 0)
        ),
    ),
)


class WorkloadSpec(SpecModel):
    """Desired state shared by Function, Source and Sink."""

    cel_rules = WORKLOAD_RULES
    message_prefix = "spec."

    name: str | None = Field(None, description="Name in Pulsar (default: the object's name).")
    class_name: str | None = Field(
        None, description="Class (Java) or module.Class (Python) that implements the code."
    )
    tenant: str | None = Field(None, description="Pulsar tenant (default: public).")
    namespace: str | None = Field(None, description="Pulsar namespace (default: default).")
    cluster_name: str | None = Field(
        None, description="Name of the Pulsar cluster (default: kubernetes)."
    )
    replicas: Int32 | None = Field(
        None,
        ge=0,
        description="Number of pods; 0 stops the workload. The scale subresource and the "
        "autoscaler write this field.",
    )
    min_replicas: Int32 | None = Field(
        None, ge=0, description="Fewest pods autoscaling may leave (0 allows scale to zero)."
    )
    max_replicas: Int32 | None = Field(
        None, ge=1, description="Most pods autoscaling may start; setting it enables autoscaling."
    )
    show_precise_parallelism: Bool | None = Field(
        None,
        description="Report the real replica count as parallelism to the code; changing "
        "replicas then restarts every pod.",
    )
    downloader_image: ImageName | None = Field(
        None, description="Image of the init container that downloads the package."
    )
    cleanup_image: ImageName | None = Field(
        None, description="Image of the job that deletes the subscription (default: image)."
    )
    log_topic: OptionalTopicName | None = Field(
        None, description="Topic that receives the code's logs."
    )
    log_topic_agent: LogTopicAgent | None = Field(
        None,
        description="Who sends logs to logTopic: the runtime itself or a filebeat sidecar.",
    )
    filebeat_image: ImageName | None = Field(
        None, description="Image of the filebeat sidecar (logTopicAgent: sidecar)."
    )
    resources: ResourceRequirements | None = Field(
        None, description="CPU and memory of the workload's container."
    )
    secrets_map: dict[str, SecretRef] | None = Field(
        None, description="Secrets the code can read, by the name it asks for."
    )
    volume_mounts: VolumeMounts | None = Field(
        None, description=core("VolumeMount", "Volumes mounted into the workload's container.")
    )
    processing_guarantee: ProcessingGuarantee | None = Field(
        None, description="Delivery guarantee (default: atleast_once)."
    )
    runtime_flags: str | None = Field(
        None, description="Extra flags for the runtime's command line."
    )
    pod: PodPolicy | None = Field(None, description="Settings of the pods.")
    pulsar: PulsarMessaging = Field(description="The Pulsar cluster to use.")
    java: JavaRuntime | None = Field(None, description="Run Java code (one runtime only).")
    python: PythonRuntime | None = Field(None, description="Run Python code (one runtime only).")
    golang: GoRuntime | None = Field(None, description="Run a Go executable (one runtime only).")
    generic_runtime: GenericRuntime | None = Field(
        None, description="Run code in another language (one runtime only)."
    )
    image: ImageName | None = Field(None, description="Runner image of the workload's container.")
    image_pull_policy: ImagePullPolicy | None = Field(
        None, description="When to pull the image (default: IfNotPresent)."
    )
    image_has_pulsarctl: Bool | None = Field(
        None, description="The image has pulsarctl; use it to download packages and clean up."
    )
    image_has_wget: Bool | None = Field(
        None,
        alias="imageHasGet",
        description="The image has wget; use it to download http(s) packages.",
    )
    stateful_config: StatefulConfig | None = Field(
        None, description="State storage for the state API."
    )
    pulsar_package_service: PulsarMessaging | None = Field(
        None,
        description="A second Pulsar cluster to download packages from (default: the one "
        "in pulsar).",
    )
    autoscaling: AutoscalingSpec | None = Field(
        None,
        description="fmesh-events autoscaling on CPU and input backlog, between minReplicas "
        "and maxReplicas.",
    )

    @property
    def replica_count(self) -> int:
        """spec.replicas, 1 when unset (the scale subresource and the autoscaler write it)."""
        return self.replicas if self.replicas is not None else 1


class ConsumerFields(SpecModel):
    """Fields of a workload that consumes input topics (Function and Sink)."""

    input: InputConf | None = Field(None, description="Input topics.")
    timeout: Int32 | None = Field(None, ge=0, description="Message timeout in milliseconds.")
    auto_ack: Bool | None = Field(
        None, description="Acknowledge messages once the code returns (default: true)."
    )
    max_message_retry: Int32 | None = Field(
        None, description="Tries per message before it goes to deadLetterTopic."
    )
    retain_ordering: Bool | None = Field(
        None, description="Process messages in order (failover subscription)."
    )
    retain_key_ordering: Bool | None = Field(
        None, description="Process messages of one key in order (key_shared subscription)."
    )
    dead_letter_topic: OptionalTopicName | None = Field(
        None, description="Topic for messages that failed maxMessageRetry times."
    )
    subscription_name: str | None = Field(
        None, description="Name of the input subscription (default: tenant/namespace/name)."
    )
    cleanup_subscription: Bool | None = Field(
        None, description="Delete the input subscription when the object is deleted."
    )
    subscription_position: SubscriptionPosition | None = Field(
        None, description="Where a new subscription starts: latest or earliest."
    )
