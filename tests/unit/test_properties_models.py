"""Property-based tests (hypothesis) of the CRD models, and the strategies of valid CRs that
the render properties (test_properties_render.py) reuse.

A generated CR is valid by construction: it follows every rule the CRD states (exactly one
runtime, className for java and python, minReplicas <= maxReplicas, the consumer rules...)
and fills the free-form and string fields with arbitrary unicode. The properties: such a CR
parses and comes back from a dump key for key; anything else parses or raises pydantic's
ValidationError, never another exception; breaking one documented rule is refused.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fmesh_events.models import (
    API_VERSION,
    MODELS_BY_KIND,
    Function,
    FunctionMesh,
    Sink,
    Source,
    parse_resource,
)

# One set of settings for every property of this suite: no deadline (a slow machine must not
# turn a property into a flake), no example database (nothing written into the repository),
# and the failing example printed for `@reproduce_failure`.
SUITE = settings(
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


LONG_FACTOR = 10  # under --long (tests/conftest.py sets FMESH_LONG_TESTS before collection)


def examples(count: int) -> settings:
    """SUITE with ``count`` examples: sized so that the whole suite stays well under 20 s
    (ten times as many under --long)."""
    factor = LONG_FACTOR if os.environ.get("FMESH_LONG_TESTS") == "1" else 1
    return settings(SUITE, max_examples=count * factor)

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

# --------------------------------------------------------------------------- scalars

# Any unicode except NUL (no Kubernetes string, command line or environment may hold it);
# codec="utf-8" leaves out lone surrogates, which no JSON text can carry either.
# Half of the characters come from what shells, JSON and YAML treat specially.
SPECIAL = " \t\n$'\"`\\;&|(){}[]*?~#!%:,"
CHARS = st.one_of(st.sampled_from(SPECIAL), st.characters(codec="utf-8", exclude_characters="\x00"))
# Whole words the operator itself writes into command lines: a user's copy must stay literal.
PLACEHOLDERS = st.sampled_from(["${SHARD_ID}", "${brokerServiceURL}", "$HOME", "$(id)", "`id`",
                                "\\$", "'\"'\"'", "-cp", "--jar", "&& exit 1"])


def text(min_size: int = 0, max_size: int = 12) -> st.SearchStrategy[str]:
    return st.text(CHARS, min_size=min_size, max_size=max_size)


def dns_label(max_length: int = 63) -> st.SearchStrategy[str]:
    """An RFC 1035 label: lowercase letters, digits and '-', a letter first, no '-' last."""
    return st.from_regex(
        rf"[a-z]([-a-z0-9]{{0,{max_length - 2}}}[a-z0-9])?", fullmatch=True
    ).filter(lambda s: len(s) <= max_length)


def dns_subdomain() -> st.SearchStrategy[str]:
    """A DNS-1123 subdomain (what the API server accepts as the name of a CR or a Secret)."""
    return st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?", fullmatch=True).filter(
        lambda s: ".." not in s and ".-" not in s and "-." not in s
    )


def config_key() -> st.SearchStrategy[str]:
    """A ConfigMap or Secret key."""
    return st.from_regex(r"[-._a-zA-Z0-9]{1,20}", fullmatch=True).filter(lambda s: s not in (".", ".."))


LABEL_VALUE = st.from_regex(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?)?", fullmatch=True)
LABEL_KEY = st.one_of(
    st.from_regex(r"([a-z0-9]{1,8}(\.[a-z0-9]{1,8}){0,2}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?",
                  fullmatch=True),
    # Keys the operator sets itself: a user's value must never win on them.
    st.sampled_from(["app", "name", "namespace", "component", "app.kubernetes.io/name",
                     "compute.functionmesh.io/name", "compute.functionmesh.io/component"]),
)
LABELS = st.dictionaries(LABEL_KEY, LABEL_VALUE, max_size=4)

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    text(),
    st.lists(PLACEHOLDERS | text(max_size=3), min_size=1, max_size=3).map("".join),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
JSON_OBJECTS = st.dictionaries(text(max_size=8), JSON_VALUES, max_size=4)
"""A free-form configuration (funcConfig, sinkConfig...): any JSON object, unicode included."""

# No space or control character (image names, topics): any other unicode.
PRINTABLE = st.text(
    st.one_of(st.sampled_from(SPECIAL.strip()),
              st.characters(codec="utf-8", min_codepoint=0x21, exclude_characters="\x7f")),
    min_size=1, max_size=15)

# Pulsar topic names (what the models accept): a short local name of any printable unicode
# but '/', or a fully qualified persistent://tenant/namespace/local.
PULSAR_NAME = st.from_regex(r"[-=:.A-Za-z0-9_]{1,10}", fullmatch=True)
LOCAL_TOPIC = PRINTABLE.map(lambda s: s.replace("/", "_"))
TOPIC = st.one_of(
    LOCAL_TOPIC,
    st.builds(lambda t, n, local: f"persistent://{t}/{n}/{local}", PULSAR_NAME, PULSAR_NAME, LOCAL_TOPIC),
)

QUANTITY = st.one_of(
    st.integers(0, 10**6),
    st.from_regex(r"[0-9]{1,4}(\.[0-9]{1,3})?(m|k|M|G|Ki|Mi|Gi)?", fullmatch=True),
)


def maybe(draw: st.DrawFn, out: dict[str, Any], key: str, strategy: st.SearchStrategy[Any]) -> None:
    """Set ``out[key]`` to a drawn value, or leave the field out."""
    if draw(st.booleans()):
        out[key] = draw(strategy)


# --------------------------------------------------------------------------- spec parts


@st.composite
def pulsar_messaging(
    draw: st.DrawFn, secret_names: st.SearchStrategy[str], secret_keys: st.SearchStrategy[str]
) -> dict[str, Any]:
    pulsar: dict[str, Any] = {"pulsarConfig": draw(dns_subdomain())}
    maybe(draw, pulsar, "authSecret", dns_subdomain())
    maybe(draw, pulsar, "tlsSecret", dns_subdomain())
    if draw(st.booleans()):
        pulsar["tlsConfig"] = {"enabled": True, "certSecretName": draw(secret_names),
                               "certSecretKey": draw(secret_keys)}
    auth = draw(st.sampled_from(["none", "oauth2", "token"]))
    if auth == "oauth2":
        pulsar["authConfig"] = {"oauth2Config": {
            "audience": draw(text()), "issuerUrl": draw(text()),
            "keySecretName": draw(secret_names), "keySecretKey": draw(secret_keys),
        }}
    elif auth == "token":
        pulsar["authConfig"] = {"genericAuth": {
            "clientAuthenticationPlugin": "org.apache.pulsar.client.impl.auth.AuthenticationToken",
            "clientAuthenticationParameters": draw(text()),
        }}
    return pulsar


@st.composite
def runtime_block(draw: st.DrawFn, runtime: str) -> dict[str, Any]:
    location = st.one_of(
        st.builds(lambda s: f"function://public/default/{s}@1", dns_label(20)),
        st.builds(lambda s: f"https://example.com/{s}", dns_label(20)),
        text(1),
    )
    if runtime == "java":
        block: dict[str, Any] = {"jar": draw(text(1, 30))}
        maybe(draw, block, "jarLocation", location)
        maybe(draw, block, "log", st.fixed_dictionaries({
            "level": st.sampled_from(["trace", "debug", "info", "warn", "error"])}))
    elif runtime == "python":
        block = {"py": draw(text(1, 30))}
        maybe(draw, block, "pyLocation", location)
        maybe(draw, block, "log", st.fixed_dictionaries({
            "level": st.sampled_from(["debug", "info", "warn", "error"])}))
    elif runtime == "golang":
        block = {"go": draw(text(1, 30))}
        maybe(draw, block, "goLocation", location)
    else:
        block = {"functionFile": draw(text(1, 30)), "language": draw(st.sampled_from(["nodejs", "python"]))}
        maybe(draw, block, "functionFileLocation", location)
    return block


@st.composite
def scaling_rules(draw: st.DrawFn) -> dict[str, Any]:
    rules: dict[str, Any] = {}
    maybe(draw, rules, "stabilizationWindowSeconds", st.integers(0, 3600))
    maybe(draw, rules, "selectPolicy", st.sampled_from(["Max", "Min", "Disabled"]))
    maybe(draw, rules, "policies", st.lists(st.fixed_dictionaries({
        "type": st.sampled_from(["Pods", "Percent"]),
        "value": st.integers(1, 1000),
        "periodSeconds": st.integers(1, 1800),
    }), min_size=1, max_size=3))
    maybe(draw, rules, "tolerance", st.sampled_from(["0.1", "0.05", "0", "50m", 0, 1]))
    return rules


@st.composite
def autoscaling(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    block: dict[str, Any] = {}
    which = draw(st.sampled_from(["cpu", "backlog", "both"] if kind != "Source" else ["cpu"]))
    if which in ("cpu", "both"):
        block["cpu"] = {"targetUtilizationPercent": draw(st.integers(1, 100))}
    if which in ("backlog", "both"):
        block["backlog"] = {"targetPerReplica": draw(st.integers(1, INT64_MAX))}
        maybe(draw, block["backlog"], "activationThreshold", st.integers(0, INT64_MAX))
    if draw(st.booleans()):
        block["behavior"] = {"scaleUp": draw(scaling_rules()), "scaleDown": draw(scaling_rules())}
    return block


@st.composite
def pod_policy(draw: st.DrawFn) -> dict[str, Any]:
    pod: dict[str, Any] = {}
    maybe(draw, pod, "labels", LABELS)
    maybe(draw, pod, "annotations", st.dictionaries(LABEL_KEY, text(), max_size=3))
    maybe(draw, pod, "nodeSelector", st.dictionaries(LABEL_KEY, LABEL_VALUE, max_size=2))
    maybe(draw, pod, "env", st.lists(
        st.fixed_dictionaries({"name": st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True),
                               "value": text()}),
        max_size=3, unique_by=lambda e: e["name"]))
    maybe(draw, pod, "liveness", st.fixed_dictionaries({
        "periodSeconds": st.integers(0, 60), "initialDelaySeconds": st.integers(0, 60)}))
    maybe(draw, pod, "disableDefaultAffinity", st.booleans())
    maybe(draw, pod, "terminationGracePeriodSeconds", st.integers(0, 3600))
    maybe(draw, pod, "serviceAccountName", dns_subdomain())
    maybe(draw, pod, "builtinAutoscaler", st.sampled_from([
        ["AverageUtilizationCPUPercent80"], ["AverageUtilizationMemoryPercent50"],
        ["AverageUtilizationCPUPercent20", "AverageUtilizationMemoryPercent80"]]))
    return pod


@st.composite
def consumer_fields(draw: st.DrawFn, spec: dict[str, Any]) -> None:
    """Fields of Function and Sink that obey the consumer rules."""
    guarantees = ["atleast_once", "atmost_once", "effectively_once", "manual"]
    guarantee = draw(st.none() | st.sampled_from(guarantees))
    if guarantee is not None:
        spec["processingGuarantee"] = guarantee
    ordering = draw(st.none() | st.booleans())
    if ordering is not None:
        spec["retainOrdering"] = ordering
    key_ordering = draw(st.none() | st.booleans())
    if guarantee != "effectively_once":
        if key_ordering is not None and not (ordering and key_ordering):
            spec["retainKeyOrdering"] = key_ordering
        maybe(draw, spec, "timeout", st.integers(0, INT32_MAX))
        retries = draw(st.none() | st.integers(-5, 100))
        if retries is not None:
            spec["maxMessageRetry"] = retries
            if retries > 0 and draw(st.booleans()):
                spec["deadLetterTopic"] = draw(TOPIC)
    maybe(draw, spec, "subscriptionName", text(1, 20))
    maybe(draw, spec, "subscriptionPosition", st.sampled_from(["latest", "earliest"]))
    maybe(draw, spec, "autoAck", st.booleans())


@st.composite
def workload_spec(
    draw: st.DrawFn, kind: str, secret_names: st.SearchStrategy[str] | None = None
) -> dict[str, Any]:
    """A valid spec of a Function, Source or Sink (camelCase JSON)."""
    # Given secret names are also used as keys (tests of name clashes pass a tiny alphabet).
    secrets = secret_names if secret_names is not None else dns_subdomain()
    keys = secret_names if secret_names is not None else config_key()
    spec: dict[str, Any] = {"pulsar": draw(pulsar_messaging(secrets, keys))}
    runtime = draw(st.sampled_from(["java", "python", "golang", "genericRuntime"]))
    spec[runtime] = draw(runtime_block(runtime))
    if runtime in ("java", "python"):
        spec["className"] = draw(text(1, 30))
    else:
        maybe(draw, spec, "className", text(1, 30))
    for field in ("name", "tenant", "namespace", "clusterName"):
        maybe(draw, spec, field, text(1, 20))
    maybe(draw, spec, "image", PRINTABLE)
    maybe(draw, spec, "replicas", st.integers(0, INT32_MAX))
    low = draw(st.none() | st.integers(0, 50))
    high = draw(st.none() | st.integers(max(1, low or 0), 100))
    if low is not None:
        spec["minReplicas"] = low
    if high is not None:
        spec["maxReplicas"] = high
        if draw(st.booleans()):
            spec["autoscaling"] = draw(autoscaling(kind))
    maybe(draw, spec, "showPreciseParallelism", st.booleans())
    maybe(draw, spec, "imagePullPolicy", st.sampled_from(["Always", "Never", "IfNotPresent"]))
    maybe(draw, spec, "logTopic", TOPIC)
    maybe(draw, spec, "logTopicAgent", st.sampled_from(["runtime", "sidecar"]))
    maybe(draw, spec, "runtimeFlags", text())
    if draw(st.booleans()):
        # Requests at most the limits: the limit of a resource, when set, is its request.
        requests = draw(st.dictionaries(st.sampled_from(["cpu", "memory"]), QUANTITY, max_size=2))
        limited = draw(st.sets(st.sampled_from(sorted(requests)))) if requests else set()
        spec["resources"] = {"requests": requests, "limits": {k: requests[k] for k in sorted(limited)}}
    maybe(draw, spec, "secretsMap", st.dictionaries(
        text(1, 10), st.fixed_dictionaries({"path": dns_subdomain(), "key": config_key()}), max_size=3))
    maybe(draw, spec, "pod", pod_policy())
    if kind in ("Function", "Sink"):
        topics = draw(st.lists(TOPIC, max_size=3, unique=True))
        pattern = draw(st.none() | TOPIC)
        connector = kind == "Function" and draw(st.booleans())
        if not topics and pattern is None and not connector:
            topics = [draw(TOPIC)]
        if topics or pattern is not None:
            spec["input"] = {"topics": topics} if topics else {}
            if pattern is not None:
                spec["input"]["topicPattern"] = pattern
        if connector:
            spec["sourceConfig"] = {"builtin": draw(text(1, 10)), "configs": draw(JSON_OBJECTS)}
        draw(consumer_fields(spec))
    if kind in ("Function", "Source"):
        output = draw(st.none() | TOPIC)
        if output is not None and output not in spec.get("input", {}).get("topics", []):
            spec["output"] = {"topic": output}
            if draw(st.booleans()):
                spec["output"]["producerConf"] = {"cryptoConfig": {"cryptoSecrets": [
                    {"secretName": draw(secrets), "secretKey": draw(keys),
                     "asVolume": draw(st.sampled_from(["/keys/a", "/keys/b"]))}]}}
    if kind == "Function":
        maybe(draw, spec, "funcConfig", JSON_OBJECTS)
        if draw(st.integers(0, 5)) == 0:
            spec["windowConfig"] = {"actualWindowFunctionClassName": draw(text(1, 20)),
                                    "windowLengthCount": draw(st.integers(1, 1000))}
        maybe(draw, spec, "maxPendingAsyncRequests", st.integers(1, INT32_MAX))
    elif kind == "Source":
        maybe(draw, spec, "sourceConfig", JSON_OBJECTS)
    else:
        maybe(draw, spec, "sinkConfig", JSON_OBJECTS)
    return spec


NAMESPACES = dns_label(20)
UIDS = st.uuids().map(str)


@st.composite
def workload_docs(
    draw: st.DrawFn,
    kinds: tuple[str, ...] = ("Function", "Source", "Sink"),
    names: st.SearchStrategy[str] | None = None,
    secret_names: st.SearchStrategy[str] | None = None,
) -> dict[str, Any]:
    """A whole valid Function, Source or Sink as the API server would return it."""
    kind = draw(st.sampled_from(kinds))
    metadata = {
        "name": draw(names if names is not None else dns_label(40)),
        "namespace": draw(NAMESPACES),
        "uid": draw(UIDS),
        "generation": draw(st.integers(1, 1000)),
    }
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata,
            "spec": draw(workload_spec(kind, secret_names))}


@st.composite
def mesh_docs(draw: st.DrawFn, entry_names: st.SearchStrategy[str] | None = None) -> dict[str, Any]:
    """A valid FunctionMesh: a few entries of each kind, unique names in each list."""
    names = entry_names if entry_names is not None else dns_label(12)
    spec: dict[str, Any] = {}
    for field, kind in (("functions", "Function"), ("sources", "Source"), ("sinks", "Sink")):
        entries = draw(st.lists(names, max_size=2, unique=True))
        if entries:
            spec[field] = [{**draw(workload_spec(kind)), "name": entry} for entry in entries]
    metadata = {"name": draw(dns_label(20)), "namespace": draw(NAMESPACES), "uid": draw(UIDS)}
    return {"apiVersion": API_VERSION, "kind": "FunctionMesh", "metadata": metadata, "spec": spec}


def dump(model: Any) -> dict[str, Any]:
    """Kubernetes JSON of a model, as the package documents it."""
    out: dict[str, Any] = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return out


# --------------------------------------------------------------------------- round trips


@examples(60)
@given(workload_docs())
def test_valid_workloads_parse_and_dump_back_unchanged(doc: dict[str, Any]) -> None:
    model = parse_resource(copy.deepcopy(doc))
    assert isinstance(model, Function | Source | Sink) and model.kind == doc["kind"]
    assert dump(model) == doc  # key for key: Function Mesh YAML applies unchanged
    assert type(model).model_validate(dump(model)) == model
    # Unicode survives a trip through JSON text (what the API server stores and returns).
    text_form = json.dumps(dump(model), ensure_ascii=False)
    assert parse_resource(json.loads(text_form.encode("utf-8").decode("utf-8"))) == model


@examples(20)
@given(mesh_docs())
def test_valid_meshes_parse_and_dump_back_unchanged(doc: dict[str, Any]) -> None:
    model = parse_resource(copy.deepcopy(doc))
    assert isinstance(model, FunctionMesh)
    assert dump(model) == doc
    assert FunctionMesh.model_validate(dump(model)) == model


# --------------------------------------------------------------------------- bad input


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a dict value or list item inside ``value``."""
    out: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            out += [(*path, key), *_paths(inner, (*path, key))]
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            out += [(*path, index), *_paths(inner, (*path, index))]
    return out


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        doc = doc[step]
    return doc


@st.composite
def mutated_docs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid CR with one to three random edits: a value replaced by any JSON, a field
    removed, an unknown field added."""
    doc: dict[str, Any] = draw(st.one_of(workload_docs(), mesh_docs()))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p[0] not in ("apiVersion", "kind")]
        path = draw(st.sampled_from(paths))
        parent = _parent(doc, path)
        edit = draw(st.sampled_from(["replace", "remove", "add"]))
        if edit == "replace":
            parent[path[-1]] = draw(JSON_VALUES)
        elif edit == "remove":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(text(1, 10))] = draw(JSON_VALUES)
    return doc


def _parse_or_refuse(doc: dict[str, Any]) -> Any:
    """The model of doc's kind, or None when pydantic refuses it; any other exception escapes."""
    model_class = MODELS_BY_KIND[doc["kind"]]
    try:
        return model_class.model_validate(doc)
    except ValidationError as error:
        assert error.errors(), "a refusal names at least one field"
        return None


@examples(60)
@given(mutated_docs())
def test_any_edit_parses_or_raises_validation_error(doc: dict[str, Any]) -> None:
    model = _parse_or_refuse(copy.deepcopy(doc))
    if model is not None:
        # What is accepted is stable: its dump parses to the same model.
        assert type(model).model_validate(dump(model)) == model


@examples(100)
@given(st.sampled_from(sorted(MODELS_BY_KIND)), st.dictionaries(text(0, 10), JSON_VALUES, max_size=5),
       st.dictionaries(st.sampled_from(["metadata", "spec", "status"]), JSON_VALUES))
def test_arbitrary_json_parses_or_raises_validation_error(
    kind: str, extra: dict[str, Any], top: dict[str, Any]
) -> None:
    _parse_or_refuse({"apiVersion": API_VERSION, "kind": kind, **extra, **top})


@examples(50)
@given(st.dictionaries(text(0, 12), JSON_VALUES, max_size=6))
def test_parse_resource_refuses_foreign_objects_with_value_error(obj: dict[str, Any]) -> None:
    # parse_resource documents ValueError for another apiVersion or kind; ValidationError is one.
    try:
        parse_resource(obj)
    except ValueError:
        return
    assert obj.get("apiVersion") == API_VERSION and obj.get("kind") in MODELS_BY_KIND


# --------------------------------------------------------------------------- the rules


@st.composite
def rule_breaking_docs(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A valid workload with exactly one documented rule broken, and which one."""
    doc = draw(workload_docs())
    spec = doc["spec"]
    runtimes = [r for r in ("java", "python", "golang", "genericRuntime") if r in spec]
    rules = ["minReplicas > maxReplicas", "two runtimes", "no runtime", "autoscaling without max",
             "java without className"]
    if doc["kind"] in ("Function", "Sink"):
        rules.append("both orderings")
    rule = draw(st.sampled_from(rules))
    if rule == "minReplicas > maxReplicas":
        high = draw(st.integers(1, 100))
        spec.update(maxReplicas=high, minReplicas=draw(st.integers(high + 1, INT32_MAX)))
    elif rule == "two runtimes":
        other = draw(st.sampled_from([r for r in ("java", "python", "golang", "genericRuntime")
                                      if r not in runtimes]))
        spec[other] = draw(runtime_block(other))
        spec.setdefault("className", "Main")
    elif rule == "no runtime":
        for runtime in runtimes:
            del spec[runtime]
    elif rule == "autoscaling without max":
        spec.pop("maxReplicas", None)
        spec["autoscaling"] = {"cpu": {"targetUtilizationPercent": 50}}
    elif rule == "java without className":
        for runtime in runtimes:
            del spec[runtime]
        spec["java"] = {"jar": "f.jar"}
        spec.pop("className", None)
    else:
        spec.update(retainOrdering=True, retainKeyOrdering=True)
        if spec.get("processingGuarantee") == "effectively_once":
            spec["processingGuarantee"] = "atleast_once"
    return rule, doc


@examples(60)
@given(rule_breaking_docs())
def test_breaking_a_documented_rule_is_refused(case: tuple[str, dict[str, Any]]) -> None:
    rule, doc = case
    with pytest.raises(ValidationError) as refused:
        MODELS_BY_KIND[doc["kind"]].model_validate(doc)
    assert refused.value.errors(), rule
