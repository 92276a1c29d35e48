"""From Pulsar's functions worker: read the registered functions, sources and sinks through
the admin API v3 and convert each config to a Function, Source or Sink spec (or one
FunctionMesh).

The conversion is pure (config dicts in, spec dicts and findings out) so it can be tested
without a cluster. Every key of a config is either mapped or reported: nothing is dropped
silently. Each result is validated with the CRD's models, so the YAML printed applies.

The admin API does not say where a component's package lives (FunctionConfig has no jar
once registered). The worker keeps that in its metadata topic; when this command may read
it, the package location, the original file name, the input and output Java types and the
exact userConfig come from there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlparse

from pydantic import ValidationError

from fmesh_events.migrate import Finding
from fmesh_events.models import API_VERSION, parse_resource
from fmesh_events.models.base import INT32_MAX, is_set
from fmesh_events.models.mesh import ENTRY_NAME_PATTERN

KINDS: dict[str, str] = {"Function": "functions", "Source": "sources", "Sink": "sinks"}
"""Kind -> path segment of the admin API v3."""

PACKAGE_SCHEMES: dict[str, str] = {"Function": "function", "Source": "source", "Sink": "sink"}
DEFAULT_METADATA_TOPIC = "persistent://public/functions/metadata"
DEFAULT_PULSAR_CONFIG = "pulsar-config"
PROPOSED_VERSION = "migrated"
"""Version of the package URL proposed when the package has no URL of its own."""

WINDOW_CONFIG_KEY = "__WINDOWCONFIGS__"  # where the worker keeps windowConfig inside userConfig
MAX_OBJECT_NAME = 55  # leaves room for "-function" and the pod ordinal within 63 characters


class MigrateError(RuntimeError):
    """A problem that stops the migration; the message is one line for the user."""


# --------------------------------------------------------------------------- worker metadata


@dataclass(frozen=True)
class WorkerRecord:
    """What the worker's metadata topic knows about one component beyond its config."""

    package_path: str | None = None
    original_file_name: str | None = None
    input_type: str | None = None
    output_type: str | None = None
    user_config: str | None = None
    source_configs: str | None = None
    sink_configs: str | None = None


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """Decode one protobuf message into (field number, value) pairs, without its schema.

    Enough for the few FunctionMetaData fields read here: varints and length-delimited
    values (strings, nested messages) are kept; fixed-width values are skipped.
    """
    out: list[tuple[int, int | bytes]] = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
            out.append((number, value))
        elif wire == 2:
            length, i = _varint(buf, i)
            out.append((number, buf[i:i + length]))
            i += length
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return out


def _first(fields: list[tuple[int, int | bytes]], number: int) -> int | bytes | None:
    return next((value for n, value in fields if n == number), None)


def _text(fields: list[tuple[int, int | bytes]], number: int) -> str | None:
    value = _first(fields, number)
    return value.decode(errors="replace") or None if isinstance(value, bytes) else None


def _message(fields: list[tuple[int, int | bytes]], number: int) -> list[tuple[int, int | bytes]]:
    value = _first(fields, number)
    return proto_fields(value) if isinstance(value, bytes) else []


def parse_function_metadata(data: bytes) -> tuple[str, WorkerRecord] | None:
    """(tenant/namespace/name, record) from one FunctionMetaData message (Function.proto:
    functionDetails=1, packageLocation=2 {packagePath=1, originalFileName=2})."""
    meta = proto_fields(data)
    details = _message(meta, 1)
    tenant, namespace, name = (_text(details, n) for n in (1, 2, 3))
    if not (tenant and namespace and name):
        return None
    location = _message(meta, 2)
    source, sink = _message(details, 11), _message(details, 12)
    return f"{tenant}/{namespace}/{name}", WorkerRecord(
        # packageUrl (14) when registered from a URL; else where the worker stored it.
        package_path=_text(details, 14) or _text(location, 1),
        original_file_name=_text(location, 2),
        input_type=_text(source, 5),
        output_type=_text(sink, 5),
        user_config=_text(details, 7),
        source_configs=_text(source, 2),
        sink_configs=_text(sink, 2),
    )


def replay_metadata(messages: Iterable[tuple[str, bytes]]) -> dict[str, WorkerRecord]:
    """The current record of every component from the metadata topic's messages, in order.

    The worker writes either ServiceRequest messages (serviceRequestType=1: 0 update,
    1 delete; functionMetaData=3) or, with a compacted topic, FunctionMetaData keyed by the
    fully qualified name (an empty value deletes).
    """
    records: dict[str, WorkerRecord] = {}
    for key, data in messages:
        if key:
            if not data:
                records.pop(key, None)
                continue
            parsed = parse_function_metadata(data)
            if parsed:
                records[parsed[0]] = parsed[1]
            continue
        request = proto_fields(data)
        kind = _first(request, 1) or 0
        meta = _first(request, 3)
        if not isinstance(meta, bytes) or kind not in (0, 1):
            continue
        parsed = parse_function_metadata(meta)
        if parsed is None:
            continue
        if kind == 1:
            records.pop(parsed[0], None)
        else:
            records[parsed[0]] = parsed[1]
    return records


# --------------------------------------------------------------------------- conversion


@dataclass
class Component:
    """One registered function, source or sink: its config as the admin API returns it."""

    kind: str
    config: dict[str, Any]
    record: WorkerRecord | None = None

    @property
    def fqn(self) -> str:
        c = self.config
        return f"{c.get('tenant')}/{c.get('namespace')}/{c.get('name')}"

    @property
    def subject(self) -> str:
        return f"{self.kind.lower()} {self.fqn}"


@dataclass
class Converted:
    """A component as a spec for one of our kinds, with what did not carry over."""

    kind: str
    object_name: str
    spec: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)


class _Reader:
    """A config being converted: remembers which keys were read, so the rest is reported."""

    def __init__(self, config: dict[str, Any], subject: str, prefix: str = "") -> None:
        self.config = config
        self.subject = subject
        self.prefix = prefix
        self.used: set[str] = set()

    def get(self, key: str) -> Any:
        self.used.add(key)
        return self.config.get(key)

    def leftovers(self) -> dict[str, Any]:
        return {k: v for k, v in self.config.items() if k not in self.used and _meaningful(v)}


def _meaningful(value: Any) -> bool:
    """False for what Pulsar reports as an unset default: None, "", 0, false, {} and []."""
    if isinstance(value, dict | list):
        return bool(value)
    return is_set(value)


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if _meaningful(value) or (value is False and key in _KEEP_FALSE):
        target[key] = value


_KEEP_FALSE = {"autoAck", "forwardSourceMessageProperty", "cleanupSubscription"}
"""Booleans whose false differs from our default, so an explicit false must be kept."""


def cpu_quantity(cores: float) -> str:
    """Pulsar's CPU cores as a Kubernetes quantity: 0.5 -> 500m, 2.0 -> 2."""
    milli = round(cores * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def bytes_quantity(count: int) -> str:
    """A byte count as a Kubernetes quantity, in the largest binary unit that divides it."""
    for suffix, size in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if count and count % size == 0:
            return f"{count // size}{suffix}"
    return str(count)


def object_name(pulsar_name: str) -> str:
    """A Kubernetes object name (DNS-1123 label) for a Pulsar name: lower case, [a-z0-9-]."""
    name = re.sub(r"[^a-z0-9-]+", "-", pulsar_name.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)[:MAX_OBJECT_NAME].strip("-")
    return name or "component"


def _lower(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) and value else None


def _int32(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = int(value)
    return number if number == value and 0 <= number <= INT32_MAX else None


class _Converter:
    """Shared by the three kinds; one instance per component."""

    def __init__(self, component: Component, pulsar_config: str, cluster_name: str | None) -> None:
        self.component = component
        self.record = component.record
        self.subject = component.subject
        self.reader = _Reader(component.config, self.subject)
        self.spec: dict[str, Any] = {}
        self.findings: list[Finding] = []
        self.pulsar_config = pulsar_config
        self.cluster_name = cluster_name

    # -- reporting

    def note(self, field_name: str, message: str, value: Any = None, attention: bool = True) -> None:
        self.findings.append(Finding(self.subject, field_name, message, value, attention))

    def no_equivalent(self, field_name: str, value: Any, why: str) -> None:
        self.note(field_name, f"no equivalent: {why}", value)

    # -- common fields

    def common(self) -> None:
        r, spec = self.reader, self.spec
        name = str(r.get("name") or "")
        spec["tenant"] = r.get("tenant")
        spec["namespace"] = r.get("namespace")
        spec["name"] = name
        _put(spec, "className", r.get("className"))
        parallelism = r.get("parallelism")
        spec["replicas"] = parallelism if isinstance(parallelism, int) and parallelism >= 0 else 1
        _put(spec, "processingGuarantee", _lower(r.get("processingGuarantees")))
        _put(spec, "logTopic", r.get("logTopic"))
        _put(spec, "runtimeFlags", r.get("runtimeFlags"))
        if self.cluster_name:
            spec["clusterName"] = self.cluster_name
        spec["pulsar"] = {"pulsarConfig": self.pulsar_config}
        self.resources(r.get("resources"))
        self.secrets(r.get("secrets"))
        self.custom_runtime_options(r.get("customRuntimeOptions"))
        fqfn = r.get("fqfn")
        if fqfn and fqfn != self.component.fqn:
            self.no_equivalent("fqfn", fqfn, "the name is tenant/namespace/name of the spec")
        if r.get("functionType") is not None:
            self.no_equivalent("functionType", r.get("functionType"), "deprecated in Pulsar")

    def resources(self, resources: Any) -> None:
        if not isinstance(resources, dict):
            return
        rest = dict(resources)
        quantities: dict[str, str] = {}
        cpu = rest.pop("cpu", None)
        if isinstance(cpu, int | float) and not isinstance(cpu, bool) and cpu > 0:
            quantities["cpu"] = cpu_quantity(float(cpu))
        ram = rest.pop("ram", None)
        if isinstance(ram, int) and not isinstance(ram, bool) and ram > 0:
            quantities["memory"] = bytes_quantity(ram)
        disk = rest.pop("disk", None)
        if quantities:
            self.spec["resources"] = {"requests": dict(quantities), "limits": dict(quantities)}
        if disk:
            self.note("resources.disk", "not carried over: neither Pulsar's runtimes nor "
                      "Kubernetes container resources enforce a disk size; add an "
                      "ephemeral-storage request or a volume if the code needs disk", disk,
                      attention=False)
        for key, value in rest.items():
            if _meaningful(value):
                self.no_equivalent(f"resources.{key}", value, "not a Pulsar resource we know")

    def secrets(self, secrets: Any) -> None:
        if not isinstance(secrets, dict) or not secrets:
            return
        mapped: dict[str, dict[str, str]] = {}
        for key, ref in secrets.items():
            if (isinstance(ref, dict) and set(ref) <= {"path", "key"}
                    and all(isinstance(v, str) for v in ref.values())):
                mapped[key] = {k: v for k, v in ref.items() if v}
            else:
                self.no_equivalent(f"secrets.{key}", ref, "secretsMap takes a Kubernetes Secret "
                                   "as {path: secret name, key: key in it}; create one")
        if mapped:
            self.spec["secretsMap"] = mapped

    def custom_runtime_options(self, raw: Any) -> None:
        """Kubernetes runtime options (KubernetesManifestCustomizer, Function Mesh's worker)."""
        if not raw:
            return
        try:
            options = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            self.no_equivalent("customRuntimeOptions", raw, "not JSON")
            return
        if not isinstance(options, dict):
            self.no_equivalent("customRuntimeOptions", raw, "not a JSON object")
            return
        pod: dict[str, Any] = self.spec.setdefault("pod", {})
        where = "customRuntimeOptions."
        simple: dict[str, Callable[[Any], None]] = {
            "extraLabels": lambda v: pod.__setitem__("labels", v),
            "extraAnnotations": lambda v: pod.__setitem__("annotations", v),
            "nodeSelectorLabels": lambda v: pod.__setitem__("nodeSelector", v),
            "tolerations": lambda v: pod.__setitem__("tolerations", v),
            "serviceAccountName": lambda v: pod.__setitem__("serviceAccountName", v),
            "clusterName": lambda v: self.spec.__setitem__("clusterName", v),
            "runnerImage": lambda v: self.spec.__setitem__("image", v),
            "inputTypeClassName": lambda v: self.spec.setdefault("input", {}).__setitem__(
                "typeClassName", v),
            "outputTypeClassName": lambda v: self.spec.setdefault("output", {}).__setitem__(
                "typeClassName", v),
        }
        for key, value in options.items():
            if not _meaningful(value):
                continue
            if key in simple:
                simple[key](value)
            elif key == "resourceRequirements" and isinstance(value, dict):
                self.spec["resources"] = value
                self.note(where + key, "used as spec.resources instead of resources.cpu/ram",
                          value, attention=False)
            elif key == "env" and isinstance(value, dict):
                pod["env"] = [{"name": k, "value": str(v)} for k, v in value.items()]
            elif key == "maxReplicas" and isinstance(value, int):
                self.spec["maxReplicas"] = value
                self.note(where + key, "kept as maxReplicas: fmesh-events autoscales between "
                          "replicas and it (CPU at 80% by default, as Function Mesh)", value,
                          attention=False)
            elif key == "jobNamespace":
                self.note(where + key, "the Kubernetes namespace is the one you apply the YAML "
                          "to (kubectl apply -n ...)", value)
            else:
                self.no_equivalent(where + key, value, "no field for it in the CRDs")
        if not pod:
            del self.spec["pod"]

    # -- inputs and outputs

    def inputs(self, kind: str) -> None:
        """inputs, topicsPattern, customSerdeInputs/customSchemaInputs (sinks: topicTo*) and
        inputSpecs, merged per topic, then written in the simplest form that says it all."""
        r = self.reader
        topics: dict[str, dict[str, Any]] = {}

        def entry(topic: str) -> dict[str, Any]:
            return topics.setdefault(topic, {})

        for topic in r.get("inputs") or []:
            entry(topic)
        pattern = r.get("topicsPattern")
        if pattern:
            entry(pattern)["regexPattern"] = True
        serde_key, schema_key = (("customSerdeInputs", "customSchemaInputs") if kind == "Function"
                                 else ("topicToSerdeClassName", "topicToSchemaType"))
        for topic, serde in (r.get(serde_key) or {}).items():
            if serde:
                entry(topic)["serdeClassName"] = serde
            else:
                entry(topic)
        for topic, schema in (r.get(schema_key) or {}).items():
            if schema:
                entry(topic)["schemaType"] = schema
            else:
                entry(topic)
        for topic, props in (r.get("topicToSchemaProperties") or {}).items():
            entry(topic)["schemaProperties"] = props
        for topic, spec in (r.get("inputSpecs") or {}).items():
            current = entry(topic)
            for key, value in (spec or {}).items():
                if _meaningful(value) and not current.get(key):
                    current[key] = value
        conf: dict[str, Any] = self.spec.setdefault("input", {})
        plain, serdes, schemas, specs = [], {}, {}, {}
        pattern_set = False
        for topic, spec in topics.items():
            spec = {k: v for k, v in spec.items() if _meaningful(v)}
            where = f"inputSpecs.{topic}"
            for key in ("poolMessages", "messagePayloadProcessorConfig"):
                if key in spec:
                    self.no_equivalent(f"{where}.{key}", spec.pop(key), "no field for it in "
                                       "the CRDs' input settings")
            regex = bool(spec.pop("regexPattern", False))
            keys = set(spec)
            if regex and not keys and not pattern_set and "topicPattern" not in conf:
                conf["topicPattern"] = topic
                pattern_set = True
            elif not regex and not keys:
                plain.append(topic)
            elif not regex and keys == {"serdeClassName"}:
                serdes[topic] = spec["serdeClassName"]
            elif not regex and keys == {"schemaType"}:
                schemas[topic] = spec["schemaType"]
            else:
                specs[topic] = self._consumer_config(spec, where, regex)
        _put(conf, "topics", sorted(plain))  # the worker keeps them in a hash map
        _put(conf, "customSerdeSources", serdes)
        _put(conf, "customSchemaSources", schemas)
        _put(conf, "sourceSpecs", specs)
        if self.record and self.record.input_type and "typeClassName" not in conf:
            conf["typeClassName"] = self.record.input_type
        if not conf:
            del self.spec["input"]

    def _consumer_config(self, spec: dict[str, Any], where: str, regex: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for ours, theirs in (("schemaType", "schemaType"), ("serdeClassname", "serdeClassName"),
                             ("schemaProperties", "schemaProperties"),
                             ("consumerProperties", "consumerProperties"),
                             ("receiverQueueSize", "receiverQueueSize")):
            if theirs in spec:
                out[ours] = spec.pop(theirs)
        if regex:
            out["isRegexPattern"] = True
        if "cryptoConfig" in spec:
            out["cryptoConfig"] = self._crypto(spec.pop("cryptoConfig"), f"{where}.cryptoConfig")
        for key, value in spec.items():
            self.no_equivalent(f"{where}.{key}", value, "no field for it in the CRDs' consumer settings")
        return out

    def _crypto(self, crypto: Any, where: str) -> dict[str, Any]:
        if not isinstance(crypto, dict):
            self.no_equivalent(where, crypto, "not an object")
            return {}
        out: dict[str, Any] = {}
        for key in ("cryptoKeyReaderClassName", "encryptionKeys", "producerCryptoFailureAction",
                    "consumerCryptoFailureAction"):
            _put(out, key, crypto.get(key))
        config = crypto.get("cryptoKeyReaderConfig")
        if isinstance(config, dict) and config:
            out["cryptoKeyReaderConfig"] = {
                k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
            if any(not isinstance(v, str) for v in config.values()):
                self.note(f"{where}.cryptoKeyReaderConfig", "non-string values written as JSON "
                          "strings (the CRD takes a map of strings)", config, attention=False)
        for key, value in crypto.items():
            if key not in out and key != "cryptoKeyReaderConfig" and _meaningful(value):
                self.no_equivalent(f"{where}.{key}", value, "no field for it in the CRDs")
        return out

    def output(self, topic: Any, serde: Any, schema: Any) -> None:
        r = self.reader
        out: dict[str, Any] = self.spec.setdefault("output", {})
        _put(out, "topic", topic)
        _put(out, "sinkSerdeClassName", serde)
        _put(out, "sinkSchemaType", schema)
        _put(out, "customSchemaSinks", r.get("customSchemaOutputs"))
        producer = self._producer(r.get("producerConfig"), r.get("batchBuilder"))
        _put(out, "producerConf", producer)
        if self.record and self.record.output_type and "typeClassName" not in out:
            out["typeClassName"] = self.record.output_type
        if not out:
            del self.spec["output"]

    def _producer(self, producer: Any, batch_builder: Any) -> dict[str, Any]:
        producer = dict(producer) if isinstance(producer, dict) else {}
        out: dict[str, Any] = {}
        for key in ("maxPendingMessages", "maxPendingMessagesAcrossPartitions",
                    "useThreadLocalProducers", "batchBuilder"):
            _put(out, key, producer.pop(key, None))
        if batch_builder and "batchBuilder" not in out:
            out["batchBuilder"] = batch_builder
        compression = producer.pop("compressionType", None)
        if compression and compression != "LZ4":  # LZ4 is the default on both sides
            out["compressionType"] = compression
        if producer.get("cryptoConfig"):
            out["cryptoConfig"] = self._crypto(producer.pop("cryptoConfig"),
                                               "producerConfig.cryptoConfig")
        for key, value in producer.items():
            if _meaningful(value):
                self.no_equivalent(f"producerConfig.{key}", value,
                                   "no field for it in the CRDs' producer settings")
        return out

    def consumer(self, subscription_key: str, position_key: str) -> None:
        r, spec = self.reader, self.spec
        for ours, theirs in (("autoAck", "autoAck"), ("retainOrdering", "retainOrdering"),
                             ("retainKeyOrdering", "retainKeyOrdering"),
                             ("cleanupSubscription", "cleanupSubscription"),
                             ("deadLetterTopic", "deadLetterTopic")):
            _put(spec, ours, r.get(theirs))
        retries = r.get("maxMessageRetries")
        if isinstance(retries, int) and retries > 0:
            spec["maxMessageRetry"] = retries
        timeout = r.get("timeoutMs")
        if timeout:
            if _int32(timeout) is None:
                self.no_equivalent("timeoutMs", timeout, "timeout is a 32-bit number of ms")
            else:
                spec["timeout"] = _int32(timeout)
        _put(spec, "subscriptionName", r.get(subscription_key))
        _put(spec, "subscriptionPosition", _lower(r.get(position_key)))

    # -- package

    def package(self, runtime: str) -> None:
        """java.jar/python.py/golang.go and where to download it from."""
        r, record, kind = self.reader, self.record, self.component.kind
        name = str(self.component.config.get("name") or "component")
        given = r.get("jar") or r.get("py") or r.get("go")  # older workers return the path
        archive = r.get("archive")
        path = (record.package_path if record else None) or archive or given
        key, location_key, field_name, default_file = {
            "JAVA": ("jar", "jarLocation", "java", f"{name}.jar"),
            "PYTHON": ("py", "pyLocation", "python", f"{name}.py"),
            "GO": ("go", "goLocation", "golang", name),
        }[runtime]
        file_name = (record.original_file_name if record else None) or _file_name(path) or default_file
        runtime_spec: dict[str, Any] = {key: file_name}
        self.spec[field_name] = runtime_spec
        scheme = PACKAGE_SCHEMES[kind]
        t, ns = self.component.config.get("tenant"), self.component.config.get("namespace")
        proposed = f"{scheme}://{t}/{ns}/{name}@{PROPOSED_VERSION}"
        publish = (f"`pulsar-admin functions download --tenant {t} --namespace {ns} --name "
                   f"{name} --path {file_name}` then `pulsar-admin packages upload {proposed} "
                   f"--path {file_name} --description migrated`")
        if not path:
            runtime_spec[location_key] = proposed
            self.note("package", "the admin API does not say where the package is (and the "
                      f"worker's metadata topic was not read); {field_name}.{location_key} is "
                      f"set to {proposed}: publish it there with {publish}")
            return
        parsed = urlparse(path)
        if parsed.scheme in ("function", "source", "sink", "http", "https"):
            runtime_spec[location_key] = path
        elif parsed.scheme == "builtin":
            connector = path.removeprefix("builtin://")
            runtime_spec[key] = f"{connector}.nar"
            self.note("archive", f"built-in connector {connector!r} of the worker: no pod has it; "
                      f"use an image that contains it (set spec.image and {field_name}.{key} to "
                      "its path there) or publish the NAR to package management and set "
                      f"{field_name}.{location_key}", path)
        elif parsed.scheme == "file" or path.startswith("/"):
            runtime_spec[location_key] = proposed
            self.note("package", "a file on the functions worker's disk has no equivalent for a "
                      f"pod; {field_name}.{location_key} is set to {proposed}: publish it with "
                      f"{publish}", path)
        else:
            runtime_spec[location_key] = path
            self.note("package", "kept as a path in the functions worker's package storage: "
                      "it downloads only while a functions worker serves it; publish it to "
                      f"package management to stop depending on the worker ({publish})", path)

    def leftovers(self) -> None:
        for key, value in self.reader.leftovers().items():
            self.no_equivalent(key, value, "no field for it in the CRDs")


def _file_name(path: str | None) -> str | None:
    if not path:
        return None
    base = urlparse(path).path.rsplit("/", 1)[-1].split("@", 1)[0]
    return base if "." in base else None


def _user_config(component: Component) -> tuple[Any, bool]:
    """userConfig, from the worker's record when there (it keeps integers as written)."""
    record = component.record
    if record and record.user_config:
        try:
            parsed = json.loads(record.user_config)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            parsed.pop(WINDOW_CONFIG_KEY, None)
            return parsed, True
    return component.config.get("userConfig"), False


def _connector_configs(component: Component, key: str, raw: str | None) -> Any:
    if raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
    return component.config.get(key)


WINDOW_FIELDS = (
    "windowLengthCount", "windowLengthDurationMs", "slidingIntervalCount",
    "slidingIntervalDurationMs", "lateDataTopic", "maxLagMs", "watermarkEmitIntervalMs",
    "timestampExtractorClassName", "actualWindowFunctionClassName", "processingGuarantees",
)


def _function(c: _Converter) -> None:
    r, spec = c.reader, c.spec
    c.common()
    c.inputs("Function")
    c.output(r.get("output"), r.get("outputSerdeClassName"), r.get("outputSchemaType"))
    c.consumer("subName", "subscriptionPosition")
    _put(spec.setdefault("input", {}), "typeClassName", r.get("inputTypeClassName"))
    _put(spec.setdefault("output", {}), "typeClassName", r.get("outputTypeClassName"))
    for key in ("input", "output"):
        if not spec[key]:
            del spec[key]
    user_config, _ = _user_config(c.component)
    r.get("userConfig")
    if isinstance(user_config, dict) and user_config:
        spec["funcConfig"] = user_config
    for key in ("forwardSourceMessageProperty", "skipToLatest", "maxPendingAsyncRequests"):
        _put(spec, key, r.get(key))
    window = r.get("windowConfig")
    if isinstance(window, dict) and window:
        ours = {k: window[k] for k in WINDOW_FIELDS if _meaningful(window.get(k))}
        ours.setdefault("actualWindowFunctionClassName", spec.get("className"))
        spec["windowConfig"] = ours
        for key, value in window.items():
            if key not in WINDOW_FIELDS and _meaningful(value):
                c.no_equivalent(f"windowConfig.{key}", value, "no field for it in windowConfig")
    if r.get("exposePulsarAdminClientEnabled"):
        c.no_equivalent("exposePulsarAdminClientEnabled", True,
                        "fmesh-events does not hand the function an admin client")
    runtime = str(r.get("runtime") or "JAVA").upper()
    if runtime not in ("JAVA", "PYTHON", "GO"):
        c.no_equivalent("runtime", runtime, "unknown runtime; written as JAVA")
        runtime = "JAVA"
    c.package(runtime)


def _source(c: _Converter) -> None:
    r, spec = c.reader, c.spec
    c.common()
    c.output(r.get("topicName"), r.get("serdeClassName"), r.get("schemaType"))
    configs = _connector_configs(c.component, "configs", c.record.source_configs if c.record else None)
    r.get("configs")
    if isinstance(configs, dict) and configs:
        spec["sourceConfig"] = configs
    batch = r.get("batchSourceConfig")
    if isinstance(batch, dict) and batch:
        spec["batchSourceConfig"] = {k: v for k, v in batch.items() if _meaningful(v)}
    c.package("JAVA")


def _sink(c: _Converter) -> None:
    r, spec = c.reader, c.spec
    c.common()
    c.inputs("Sink")
    c.consumer("sourceSubscriptionName", "sourceSubscriptionPosition")
    configs = _connector_configs(c.component, "configs", c.record.sink_configs if c.record else None)
    r.get("configs")
    if isinstance(configs, dict) and configs:
        spec["sinkConfig"] = configs
    delay = r.get("negativeAckRedeliveryDelayMs")
    if delay:
        if _int32(delay) is None:
            c.no_equivalent("negativeAckRedeliveryDelayMs", delay, "a 32-bit number of ms")
        else:
            spec["negativeAckRedeliveryDelayMs"] = _int32(delay)
    for key in ("transformFunction", "transformFunctionClassName", "transformFunctionConfig"):
        value = r.get(key)
        if _meaningful(value):
            c.no_equivalent(key, value, "the CRDs have no sink transform function")
    c.package("JAVA")


_CONVERTERS: dict[str, Callable[[_Converter], None]] = {
    "Function": _function, "Source": _source, "Sink": _sink,
}


def convert(component: Component, pulsar_config: str = DEFAULT_PULSAR_CONFIG,
            cluster_name: str | None = None) -> Converted:
    """The spec of one component (not yet validated; see :func:`documents`)."""
    if component.kind not in _CONVERTERS:
        raise ValueError(f"unknown kind {component.kind!r}")
    converter = _Converter(component, pulsar_config, cluster_name)
    _CONVERTERS[component.kind](converter)
    converter.leftovers()
    pulsar_name = str(component.config.get("name") or "")
    return Converted(component.kind, object_name(pulsar_name), converter.spec, converter.findings)


# --------------------------------------------------------------------------- documents


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        suffix = f"-{n}"
        candidate, n = name[: MAX_OBJECT_NAME - len(suffix)] + suffix, n + 1
    taken.add(candidate)
    return candidate


def _drop(doc: dict[str, Any], loc: tuple[int | str, ...]) -> tuple[int | str, ...] | None:
    """Remove the deepest existing field along ``loc`` (a pydantic error location, which may
    end in a union member's name) from ``doc``, below ``spec``; the path removed, or None."""
    parents: list[Any] = []
    node: Any = doc
    walked: list[int | str] = []
    for part in loc:
        if (isinstance(node, dict) and part in node) or (
                isinstance(node, list) and isinstance(part, int) and part < len(node)):
            parents.append(node)
            node = node[part]  # type: ignore[index]
            walked.append(part)
        else:
            break
    if len(walked) < 2:
        return None
    del parents[-1][walked[-1]]
    return tuple(walked)


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validated(doc: dict[str, Any], subject: str) -> tuple[dict[str, Any] | None, list[Finding]]:
    """``doc`` as our CRDs accept it: a field a model refuses is removed and reported; a
    document whose problem is not one field (a cross-field rule) is left out and reported."""
    findings: list[Finding] = []
    for _ in range(50):
        try:
            parse_resource(doc)
            return doc, findings
        except ValidationError as error:
            removed = False
            for problem in error.errors():
                loc = tuple(problem["loc"])
                value = problem.get("input")
                dropped = _drop(doc, loc)
                if dropped:
                    removed = True
                    findings.append(Finding(subject, _location(dropped), "left out: refused by "
                                            f"the CRD's schema: {problem['msg']}", value))
                else:
                    findings.append(Finding(subject, _location(loc) or "spec",
                                            f"not converted: {problem['msg']}"))
                    return None, findings
            if not removed:
                break
    findings.append(Finding(subject, "spec", "not converted: the spec kept failing validation"))
    return None, findings


def documents(converted: list[Converted], *, mesh: str | None, pulsar_config: str,
              web_service_url: str, broker_service_url: str,
              subject: str = "") -> tuple[list[dict[str, Any]], list[Finding]]:
    """The ConfigMap and the CRs (or one FunctionMesh) to apply, each validated."""
    findings: list[Finding] = []
    docs: list[dict[str, Any]] = [{
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": pulsar_config},
        "data": {"webServiceURL": web_service_url, "brokerServiceURL": broker_service_url},
    }]
    if mesh is None:
        taken: dict[str, set[str]] = {}
        for item in converted:
            name = _unique(item.object_name, taken.setdefault(item.kind, set()))
            findings.extend(item.findings)
            doc = {"apiVersion": API_VERSION, "kind": item.kind, "metadata": {"name": name},
                   "spec": item.spec}
            good, problems = validated(doc, f"{item.kind.lower()} {_fqn(item.spec)}")
            findings.extend(problems)
            if good is not None:
                docs.append(good)
        return docs, findings
    lists: dict[str, list[dict[str, Any]]] = {"Function": [], "Source": [], "Sink": []}
    names: dict[str, set[str]] = {}
    for item in converted:
        findings.extend(item.findings)
        entry = _mesh_entry(item, names.setdefault(item.kind, set()), findings)
        entry_doc = {"apiVersion": API_VERSION, "kind": item.kind,
                     "metadata": {"name": f"{mesh}-{entry['name']}"}, "spec": entry}
        good, problems = validated(entry_doc, f"{item.kind.lower()} {_fqn(item.spec)}")
        findings.extend(problems)
        if good is not None:
            lists[item.kind].append(good["spec"])
    spec = {plural: lists[kind] for kind, plural in
            (("Function", "functions"), ("Source", "sources"), ("Sink", "sinks")) if lists[kind]}
    mesh_doc = {"apiVersion": API_VERSION, "kind": "FunctionMesh", "metadata": {"name": mesh},
                "spec": spec}
    good, problems = validated(mesh_doc, f"functionmesh {mesh}")
    findings.extend(problems)
    if good is not None:
        docs.append(good)
    return docs, findings


def _fqn(spec: dict[str, Any]) -> str:
    return f"{spec.get('tenant')}/{spec.get('namespace')}/{spec.get('name')}"


def _mesh_entry(item: Converted, taken: set[str], findings: list[Finding]) -> dict[str, Any]:
    """A mesh entry: its name is also the name in Pulsar, so it must be a DNS label."""
    spec = dict(item.spec)
    pulsar_name = str(spec.get("name") or "")
    entry_name = pulsar_name
    if not re.fullmatch(ENTRY_NAME_PATTERN, pulsar_name) or len(pulsar_name) > 63 \
            or pulsar_name in taken:
        entry_name = _unique(item.object_name, taken)
        subject = f"{item.kind.lower()} {_fqn(spec)}"
        message = (f"a FunctionMesh entry's name is also its name in Pulsar and must be a DNS "
                   f"label: the name in Pulsar becomes {entry_name!r}")
        if item.kind in ("Function", "Sink") and "subscriptionName" not in spec:
            spec["subscriptionName"] = f"{spec.get('tenant')}/{spec.get('namespace')}/{pulsar_name}"
            message += " (subscriptionName keeps the old default subscription)"
        findings.append(Finding(subject, "name", message, pulsar_name))
    else:
        taken.add(entry_name)
    spec["name"] = entry_name
    return spec


def dump_yaml(docs: list[dict[str, Any]]) -> str:
    """Documents as YAML that kubectl reads back unchanged.

    kubectl's YAML 1.1 parser takes y, Y, n and N for booleans; PyYAML leaves them plain, so
    a userConfig key ``n`` would arrive as ``false``. This dumper quotes them.
    """
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"),
                                 list("yYnN"))
    return yaml.dump_all(docs, Dumper=Dumper, sort_keys=False)


# --------------------------------------------------------------------------- admin API


def _admin_error(error: Exception, admin_url: str, what: str) -> MigrateError:
    from fmesh_events.pulsar_client import PulsarAdminError

    if isinstance(error, PulsarAdminError):
        if error.status in (401, 403):
            return MigrateError(f"not allowed to {what} at {admin_url} (HTTP {error.status}): "
                                "check --pulsar-auth-token (FMESH_PULSAR_AUTH_TOKEN) and its role")
        return MigrateError(f"could not {what}: {error}")
    return MigrateError(f"cannot reach the Pulsar admin API at {admin_url} to {what}: "
                        f"{type(error).__name__}: {_reason(error)}")


def _reason(error: Exception) -> str:
    reason = getattr(error, "reason", None)
    return str(reason or error).splitlines()[0][:300]


def read_components(admin: Any, tenant: str, namespace: str) -> list[Component]:
    """Every function, source and sink of tenant/namespace, through the admin API v3."""
    import urllib3

    from fmesh_events.pulsar_client import PulsarAdminError

    base = admin.base
    try:
        # Listing the tenant's namespaces is allowed to a tenant admin (listing tenants is
        # not), and the functions API answers [] for a tenant or namespace that does not exist.
        namespaces = admin.request("GET", f"/admin/v2/namespaces/{quote(tenant, safe='')}")
    except PulsarAdminError as error:
        if error.status != 404:
            raise _admin_error(error, base, f"read tenant {tenant}") from None
        raise MigrateError(f"no tenant {tenant!r} in the Pulsar cluster at {base}"
                           f"{_known_tenants(admin)}") from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise _admin_error(error, base, f"read tenant {tenant}") from None
    if f"{tenant}/{namespace}" not in (namespaces or []):
        raise MigrateError(f"no namespace {tenant}/{namespace} in the Pulsar cluster at {base} "
                           f"(namespaces of {tenant}: {', '.join(sorted(namespaces or [])) or 'none'})")
    components: list[Component] = []
    for kind, plural in KINDS.items():
        path = f"/admin/v3/{plural}/{quote(tenant, safe='')}/{quote(namespace, safe='')}"
        try:
            names = admin.request("GET", path)
            for name in sorted(names or []):
                config = admin.request("GET", f"{path}/{quote(name, safe='')}")
                if isinstance(config, dict):
                    components.append(Component(kind, config))
        except (PulsarAdminError, urllib3.exceptions.HTTPError, OSError) as error:
            if isinstance(error, PulsarAdminError) and error.status in (404, 409, 503):
                raise MigrateError(f"the Pulsar cluster at {base} does not serve the functions API "
                                   f"(is a functions worker running?): {error}") from None
            raise _admin_error(error, base, f"list {plural} of {tenant}/{namespace}") from None
    return components


def _known_tenants(admin: Any) -> str:
    """The tenants for an error message, when this role may list them; else nothing."""
    try:
        tenants = admin.request("GET", "/admin/v2/tenants")
    except Exception:
        return ""
    return f" (tenants: {', '.join(sorted(tenants or [])) or 'none'})"


def cluster_name(admin: Any) -> str | None:
    """The Pulsar cluster's name, when the admin API names exactly one."""
    try:
        clusters = admin.request("GET", "/admin/v2/clusters")
    except Exception:
        return None
    return clusters[0] if isinstance(clusters, list) and len(clusters) == 1 else None


def read_worker_records(
    settings: Any, admin: Any, topic: str, tenant: str, namespace: str,
    timeout_seconds: float = 30.0,
) -> tuple[dict[str, WorkerRecord], str | None]:
    """Records of tenant/namespace from the worker's metadata topic, or why they are not.

    The topic is checked through the admin API first, so reading never creates it.
    """
    import time

    import pulsar

    from fmesh_events.pulsar_client import connect

    parsed = urlparse(topic)
    parts = f"{parsed.netloc}{parsed.path}".split("/")
    if parsed.scheme not in ("persistent", "non-persistent") or len(parts) != 3:
        return {}, f"{topic!r} is not a full topic name (persistent://tenant/namespace/topic)"
    try:
        listed = admin.request("GET", f"/admin/v2/{parsed.scheme}/{parts[0]}/{parts[1]}")
    except Exception as error:
        return {}, f"cannot list the topics of {parts[0]}/{parts[1]}: {_reason(error)}"
    if topic not in (listed or []):
        return {}, f"{topic} does not exist"
    client = None
    try:
        client = connect(settings, operation_timeout_seconds=int(timeout_seconds))
        reader = client.create_reader(topic, pulsar.MessageId.earliest)
        messages: list[tuple[str, bytes]] = []
        deadline = time.monotonic() + timeout_seconds
        while reader.has_message_available():
            if time.monotonic() > deadline:
                return {}, f"reading {topic} took longer than {timeout_seconds:.0f}s"
            message = reader.read_next(timeout_millis=int(timeout_seconds * 1000))
            messages.append((message.partition_key() or "", message.data()))
        reader.close()
    except Exception as error:
        return {}, f"cannot read {topic}: {_reason(error)}"
    finally:
        if client is not None:
            client.close()
    prefix = f"{tenant}/{namespace}/"
    try:
        records = replay_metadata(messages)
    except ValueError as error:
        return {}, f"cannot decode {topic}: {error}"
    return {k.removeprefix(prefix): v for k, v in records.items() if k.startswith(prefix)}, None


@dataclass
class Migration:
    """What `migrate from-pulsar` prints and reports."""

    documents: list[dict[str, Any]]
    findings: list[Finding]
    components: list[Component]


def migrate(settings: Any, tenant: str, namespace: str, *, mesh: str | None = None,
            pulsar_config: str = DEFAULT_PULSAR_CONFIG,
            metadata_topic: str = DEFAULT_METADATA_TOPIC) -> Migration:
    """Read tenant/namespace from the Pulsar cluster of ``settings`` and convert it all."""
    from fmesh_events.pulsar_client import PulsarAdmin

    admin = PulsarAdmin(settings)
    components = read_components(admin, tenant, namespace)
    findings: list[Finding] = []
    scope = f"{tenant}/{namespace}"
    if components and metadata_topic:
        records, why = read_worker_records(settings, admin, metadata_topic, tenant, namespace)
        if why:
            findings.append(Finding(scope, "packages", "package locations and Java types are "
                                    f"unknown: {why} (it is the worker's metadata topic; "
                                    "reading it needs a role allowed to consume it)"))
        for component in components:
            component.record = records.get(str(component.config.get("name")))
    name = cluster_name(admin)
    converted = [convert(c, pulsar_config, name) for c in components]
    docs, problems = documents(converted, mesh=mesh, pulsar_config=pulsar_config,
                               web_service_url=settings.pulsar_admin_url,
                               broker_service_url=settings.pulsar_service_url)
    findings += problems
    if components:
        findings.append(Finding(f"configmap {pulsar_config}", "data", "holds the URLs this "
                                "command used; change them if pods reach Pulsar at another "
                                "address", {"webServiceURL": settings.pulsar_admin_url,
                                            "brokerServiceURL": settings.pulsar_service_url},
                                attention=False))
        if settings.pulsar_auth_token is not None or settings.pulsar_tls_cert_file is not None:
            findings.append(Finding(f"configmap {pulsar_config}", "auth", "this cluster needs "
                                    "credentials: give the pods theirs with spec.pulsar.authConfig "
                                    "or authSecret (not written here: no secret leaves this command)"))
    return Migration(docs, findings, components)
