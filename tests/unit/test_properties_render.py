"""Property-based tests (hypothesis) of the renderer: for any valid CR, the StatefulSet,
Service and mesh children it renders are deterministic, named and labelled within
Kubernetes' rules, owned by the CR, and carry the user's configuration unchanged."""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from fmesh_events.models import API_VERSION, Function, FunctionMesh, Sink, Source, parse_resource
from fmesh_events.reconcile import command, render
from fmesh_events.reconcile.render import (
    MESH_LABEL,
    POD_TEMPLATE_HASH,
    _covers,
    immutable_fields_changed,
    pod_template_hash,
    render_mesh_children,
    render_service,
    render_statefulset,
    render_workload,
)
from tests.unit.test_properties_models import (
    JSON_OBJECTS,
    PLACEHOLDERS,
    SPECIAL,
    dns_label,
    dns_subdomain,
    dump,
    examples,
    mesh_docs,
    text,
    workload_docs,
)

Workload = Function | Source | Sink

# Kubernetes' limits on the names render makes from a CR's name. A Service name is an
# RFC 1035 label (at most 63 characters, a letter first). The StatefulSet controller labels
# each pod controller-revision-hash=<statefulset>-<hash of up to 10 characters>, and a label
# value holds at most 63 characters: a StatefulSet named longer than 52 never gets a pod.
MAX_LABEL = 63
MAX_STATEFULSET_NAME = 52
SUFFIXES = {"Function": "-function", "Source": "-source", "Sink": "-sink"}
# The longest CR name whose children all fit, for every kind: 52 - len("-function").
NAME_BUDGET = MAX_STATEFULSET_NAME - max(len(s) for s in SUFFIXES.values())

DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

# Secret names (and keys) from a tiny alphabet, so that two often make the same volume name.
CLASHING_SECRETS = st.from_regex(r"[ab]([-.]?[ab]){0,2}", fullmatch=True)


@st.composite
def clashing_secret_docs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid CR that mounts a TLS, an OAuth2 and (but a Sink) an encryption key Secret."""
    doc = draw(workload_docs(names=dns_label(NAME_BUDGET), secret_names=CLASHING_SECRETS))
    spec = doc["spec"]
    tls = (draw(CLASHING_SECRETS), draw(CLASHING_SECRETS))
    # Half the time the OAuth2 Secret is one that makes the same volume name as the TLS one:
    # (a, b.a) and (a-b, a) both make a-b-a.
    first, _, rest = tls[1].partition(".")
    oauth2 = ((f"{tls[0]}-{first}", rest) if rest and draw(st.booleans())
              else (draw(CLASHING_SECRETS), draw(CLASHING_SECRETS)))
    spec["pulsar"]["tlsConfig"] = {"enabled": True, "certSecretName": tls[0], "certSecretKey": tls[1]}
    spec["pulsar"]["authConfig"] = {"oauth2Config": {
        "audience": "a", "issuerUrl": "https://issuer", "keySecretName": oauth2[0],
        "keySecretKey": oauth2[1]}}
    if doc["kind"] != "Sink":
        spec.setdefault("output", {"topic": "out"})["producerConf"] = {"cryptoConfig": {"cryptoSecrets": [
            {"secretName": draw(CLASHING_SECRETS), "secretKey": draw(CLASHING_SECRETS),
             "asVolume": "/keys"}]}}
        if spec["output"]["topic"] in (spec.get("input") or {}).get("topics", []):
            spec["output"]["topic"] = "out-" + "x" * 20
    return doc


# Text with at least one character or word a shell would act on.
NASTY = st.builds(lambda a, b, c: a + b + c, text(max_size=4),
                  st.sampled_from(list(SPECIAL)) | PLACEHOLDERS, text(max_size=4))
NASTY_JSON = st.dictionaries(NASTY, st.one_of(NASTY, JSON_OBJECTS, st.lists(NASTY, max_size=2)),
                             min_size=1, max_size=3)


RUNTIMES = ("java", "python", "golang", "genericRuntime")


@st.composite
def nasty_command_docs(draw: st.DrawFn, runtime: str) -> dict[str, Any]:
    """A valid CR whose Pulsar name, paths, class and configuration all hold shell syntax."""
    doc = draw(workload_docs(names=dns_label(NAME_BUDGET)))
    spec = doc["spec"]
    for other in RUNTIMES:
        spec.pop(other, None)
    spec[runtime] = {"java": {"jar": draw(NASTY)}, "python": {"py": draw(NASTY)},
                     "golang": {"go": draw(NASTY)},
                     "genericRuntime": {"functionFile": draw(NASTY), "language": "nodejs"}}[runtime]
    spec.update(name=draw(NASTY), className=draw(NASTY), clusterName=draw(NASTY))
    spec.pop("windowConfig", None)
    spec[{"Function": "funcConfig", "Source": "sourceConfig", "Sink": "sinkConfig"}[doc["kind"]]] = (
        draw(NASTY_JSON))
    return doc


def workload(doc: dict[str, Any]) -> Workload:
    model = parse_resource(copy.deepcopy(doc))
    assert isinstance(model, Function | Source | Sink)
    return model


def statefulset_and_service(cr: Workload) -> tuple[dict[str, Any], dict[str, Any]]:
    objects = render_workload(cr)
    assert [o["kind"] for o in objects] == ["StatefulSet", "Service"]
    return objects[0], objects[1]


def main_container(sts: dict[str, Any], cr: Workload) -> dict[str, Any]:
    containers = sts["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == render.container_name(cr))


def is_dns1035_label(name: str) -> bool:
    return len(name) <= MAX_LABEL and DNS1035.match(name) is not None


def is_label_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        return False
    return len(name) <= MAX_LABEL and LABEL_NAME.match(name) is not None


def is_label_value(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= MAX_LABEL and LABEL_VALUE.match(value) is not None


def assert_valid_labels(labels: dict[str, Any], where: str) -> None:
    for key, value in labels.items():
        assert is_label_key(key), f"{where}: label key {key!r}"
        assert is_label_value(value), f"{where}: label {key}={value!r}"


def nones(value: Any, path: str = "") -> list[str]:
    if value is None:
        return [path or "."]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in nones(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in nones(v, f"{path}[{i}]")]
    return []


def assert_children_named_and_labelled(cr: Workload) -> None:
    sts, svc = statefulset_and_service(cr)
    name = cr.metadata["name"]
    assert sts["metadata"]["name"] == f"{name}{SUFFIXES[cr.kind]}"
    assert svc["metadata"]["name"] == f"{sts['metadata']['name']}-headless"
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    assert len(sts["metadata"]["name"]) <= MAX_STATEFULSET_NAME, sts["metadata"]["name"]
    assert DNS1123_LABEL.match(sts["metadata"]["name"]), sts["metadata"]["name"]
    assert is_dns1035_label(svc["metadata"]["name"]), svc["metadata"]["name"]
    template = sts["spec"]["template"]
    for where, labels in (("statefulset", sts["metadata"]["labels"]),
                          ("selector", sts["spec"]["selector"]["matchLabels"]),
                          ("pod template", template["metadata"]["labels"]),
                          ("service", svc["metadata"]["labels"]),
                          ("service selector", svc["spec"]["selector"])):
        assert_valid_labels(labels, where)


# --------------------------------------------------------------------------- shape


@examples(50)
@given(workload_docs(names=dns_label(NAME_BUDGET)))
def test_children_are_deterministic_named_labelled_and_owned(doc: dict[str, Any]) -> None:
    cr = workload(doc)
    sts, svc = statefulset_and_service(cr)

    # Deterministic: the same CR, parsed again or copied, renders the very same dicts.
    assert render_workload(workload(doc)) == [sts, svc]
    assert render_workload(workload(dump(cr))) == [sts, svc]
    assert json.loads(json.dumps([sts, svc])) == [sts, svc]  # plain JSON all the way down
    assert nones([sts, svc]) == []  # server-side apply would fight over nulls

    assert_children_named_and_labelled(cr)

    # Owned by the CR, as its controller.
    owner = {"apiVersion": API_VERSION, "kind": doc["kind"], "name": doc["metadata"]["name"],
             "uid": doc["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
    for obj in (sts, svc):
        assert obj["metadata"]["ownerReferences"] == [owner]
        assert obj["metadata"]["namespace"] == doc["metadata"]["namespace"]

    # The selector matches the pods and the Service whatever labels the user asks for.
    selector = sts["spec"]["selector"]["matchLabels"]
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert svc["spec"]["selector"] == selector == sts["metadata"]["labels"]
    assert render.status_selector(cr) == ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    user_labels = (doc["spec"].get("pod") or {}).get("labels") or {}
    assert {k: v for k, v in user_labels.items() if k not in selector}.items() <= pod_labels.items()

    # Replicas follow the spec (1 when unset).
    assert sts["spec"]["replicas"] == doc["spec"].get("replicas", 1)


@examples(50)
@given(st.one_of(workload_docs(names=dns_label(NAME_BUDGET)), clashing_secret_docs()))
def test_pod_volumes_mounts_and_containers_are_consistent(doc: dict[str, Any]) -> None:
    cr = workload(doc)
    sts, _ = statefulset_and_service(cr)
    pod = sts["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    assert len(volumes) == len(pod.get("volumes", [])), "volume names are unique"
    for name in volumes:
        assert len(name) <= MAX_LABEL and DNS1123_LABEL.match(name), f"volume name {name!r}"
    names = [c["name"] for c in pod["containers"]]
    assert len(set(names)) == len(names)
    for container in pod["containers"]:
        assert len(container["name"]) <= MAX_LABEL and DNS1123_LABEL.match(container["name"])
        mounts = container.get("volumeMounts", [])
        assert len({m["mountPath"] for m in mounts}) == len(mounts), "mount paths are unique"
        for mount in mounts:
            assert mount["name"] in volumes, f"{container['name']} mounts unknown {mount['name']!r}"
        env = [e["name"] for e in container.get("env", [])]
        assert len(set(env)) == len(env), "env names are unique"

    # Each Secret-backed mount sees the Secret and key it was asked for, even when two
    # Secrets boil down to the same volume name.
    spec = doc["spec"]
    wanted: dict[str, tuple[str, str]] = {}
    tls = spec["pulsar"].get("tlsConfig")
    if tls:
        wanted[command.TLS_MOUNT_PATH] = (tls["certSecretName"], tls["certSecretKey"])
    oauth2 = (spec["pulsar"].get("authConfig") or {}).get("oauth2Config")
    if oauth2:
        wanted[command.OAUTH2_MOUNT_PATH] = (oauth2["keySecretName"], oauth2["keySecretKey"])
    mounts = {m["mountPath"]: m["name"] for m in main_container(sts, cr).get("volumeMounts", [])}
    for path, (secret, key) in wanted.items():
        source = volumes[mounts[path]]["secret"]
        assert (source["secretName"], source["items"][0]["key"]) == (secret, key), path


def _small(kind: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"pulsar": {"pulsarConfig": "p"}, "golang": {"go": "f"}}
    if kind != "Source":
        spec["input"] = {"topics": ["t"]}
    return {"apiVersion": API_VERSION, "kind": kind,
            "metadata": {"name": name, "namespace": "ns", "uid": "u-1"}, "spec": spec}


@examples(40)
@example(_small("Function", "f" * NAME_BUDGET))  # the longest everywhere: accepted
@example(_small("Function", "f" * (NAME_BUDGET + 1)))  # refused
@example(_small("Sink", "s" * (MAX_STATEFULSET_NAME - len("-sink"))))
@example(_small("Source", "s.x"))  # a dot: a valid CR name, not a Service name
@example(_small("Sink", "1x"))  # a digit first: not a Service name
@given(workload_docs(names=dns_subdomain()))
def test_every_name_the_models_admit_renders_valid_children(doc: dict[str, Any]) -> None:
    # The API server takes any DNS subdomain as a CR name; the models (and the CRD's rule on
    # metadata.name) must refuse those whose StatefulSet or Service Kubernetes would refuse.
    try:
        cr = workload(doc)
    except ValidationError as error:
        assert "metadata.name" in str(error)
        return
    assert_children_named_and_labelled(cr)


# --------------------------------------------------------------------------- pod template hash


@examples(40)
@given(workload_docs(names=dns_label(NAME_BUDGET)), st.integers(0, 2**31 - 1), JSON_OBJECTS)
def test_hash_follows_the_pod_template_and_ignores_replicas(
    doc: dict[str, Any], replicas: int, config: dict[str, Any]
) -> None:
    cr = workload(doc)
    sts = render_statefulset(cr)
    template = sts["spec"]["template"]
    digest = sts["metadata"]["annotations"][POD_TEMPLATE_HASH]
    assert template["metadata"]["annotations"][POD_TEMPLATE_HASH] == digest
    assert pod_template_hash(template) == digest == pod_template_hash(render.render_pod_template(cr))
    assert re.fullmatch(r"[0-9a-f]{16}", digest)

    # Scaling touches spec.replicas only: the pods do not roll (unless showPreciseParallelism
    # asks for the replica count in the instances' configuration, as documented).
    scaled = copy.deepcopy(doc)
    scaled["spec"]["replicas"] = replicas
    scaled_sts = render_statefulset(workload(scaled))
    assert scaled_sts["spec"]["replicas"] == replicas
    if not doc["spec"].get("showPreciseParallelism"):
        assert scaled_sts["spec"]["template"] == template

    # Another user configuration rolls them (a Go instance only takes a Function's).
    if cr.spec.golang is not None and doc["kind"] != "Function":
        return
    field = {"Function": "funcConfig", "Source": "sourceConfig", "Sink": "sinkConfig"}[doc["kind"]]
    changed = copy.deepcopy(doc)
    changed["spec"][field] = config
    before, after = _expected_user_config(doc), _expected_user_config(changed)
    if json.dumps(before, sort_keys=True) != json.dumps(after, sort_keys=True):
        assert render_statefulset(workload(changed))["metadata"]["annotations"][POD_TEMPLATE_HASH] != digest


# --------------------------------------------------------------------------- _covers


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaves(v, (*path, i))]
    return [path]


def _dicts(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [path, *(p for k, v in value.items() for p in _dicts(v, (*path, k)))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _dicts(v, (*path, i))]
    return []


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


@examples(40)
@given(workload_docs(names=dns_label(NAME_BUDGET)), st.data())
def test_a_rendered_statefulset_covers_itself_and_nothing_else(
    doc: dict[str, Any], data: st.DataObject
) -> None:
    sts = render_statefulset(workload(doc))
    assert _covers(sts, copy.deepcopy(sts))
    assert immutable_fields_changed(copy.deepcopy(sts), sts) == []

    # The API server adds empty or defaulted fields: still covered.
    defaulted = copy.deepcopy(sts)
    where = data.draw(st.sampled_from(_dicts(defaulted)), label="defaulted at")
    _at(defaulted, where)[data.draw(st.sampled_from(["status", "x-empty"]))] = data.draw(
        st.sampled_from([{}, [], None]))
    assert _covers(sts, defaulted)

    # Any leaf changed, or any field with a value added, is noticed.
    changed = copy.deepcopy(sts)
    leaf = data.draw(st.sampled_from(_leaves(changed)), label="changed leaf")
    parent = _at(changed, leaf[:-1])
    parent[leaf[-1]] = "\u2603 changed" if parent[leaf[-1]] != "\u2603 changed" else "other"
    assert not _covers(sts, changed)
    added = copy.deepcopy(sts)
    where = data.draw(st.sampled_from(_dicts(added)), label="added at")
    _at(added, where)["x-added-\u2603"] = data.draw(st.sampled_from(["v", 1, True, {"k": "v"}, ["i"]]))
    assert not _covers(sts, added)


# --------------------------------------------------------------------------- configuration


def _script(container: dict[str, Any]) -> str:
    cmd = container["command"]
    assert cmd[:2] in (["bash", "-c"], ["sh", "-c"]) and len(cmd) == 3
    return str(cmd[2])


def _arg(tokens: list[str], flag: str) -> str:
    return tokens[tokens.index(flag) + 1]


def _go_conf(script: str) -> Any:
    """GO_FUNCTION_CONF as bash itself expands it (shard 3, broker pulsar://b:6650)."""
    start = script.index("shardId=${SHARD_ID} && GO_FUNCTION_CONF=") + len("shardId=${SHARD_ID} && ")
    end = script.index(" && echo goFunctionConfigs=\"'${GO_FUNCTION_CONF}'\"")
    program = (f"SHARD_ID=3; brokerServiceURL=pulsar://b:6650; {script[start:end]}; "
               'printf %s "$GO_FUNCTION_CONF"')
    out = subprocess.run(["bash", "-c", program], capture_output=True, check=True, env={})
    return json.loads(out.stdout.decode("utf-8"))


def _expected_user_config(doc: dict[str, Any]) -> Any:
    spec = doc["spec"]
    field = {"Function": "funcConfig", "Source": "sourceConfig", "Sink": "sinkConfig"}[doc["kind"]]
    config = copy.deepcopy(spec.get(field))
    if "windowConfig" in spec:
        config = config or {}
        config["__WINDOWCONFIGS__"] = {**spec["windowConfig"],
                                       "actualWindowFunctionClassName": spec.get("className", "")}
    return config


@pytest.mark.parametrize("runtime", RUNTIMES)
@examples(25)
@given(data=st.data())
def test_user_configuration_and_names_survive_the_command_line(runtime: str, data: st.DataObject) -> None:
    doc = data.draw(st.one_of(nasty_command_docs(runtime), workload_docs(names=dns_label(NAME_BUDGET))))
    cr = workload(doc)
    sts, _ = statefulset_and_service(cr)
    script = _script(main_container(sts, cr))
    expected = _expected_user_config(doc)
    name = doc["spec"].get("name") or doc["metadata"]["name"]
    if cr.spec.golang is not None:
        conf = _go_conf(script)
        assert conf["instanceID"] == 3 and conf["pulsarServiceURL"] == "pulsar://b:6650"
        assert conf["funcID"] == f"3-{doc['metadata']['uid']}"
        assert conf["name"] == name and conf["clusterName"] == command.cluster_name(cr)
        if doc["kind"] == "Function":
            assert (json.loads(conf["userConfig"]) if conf["userConfig"] else None) == expected
        return
    tokens = shlex.split(script)
    details = json.loads(_arg(tokens, "--function_details"))
    assert details == command.function_details(cr)  # every field, quoting and all
    assert details["name"] == name
    if doc["kind"] == "Sink":
        configs = details["sink"].get("configs")
        assert (json.loads(configs) if configs else {}) == (expected or {})
    else:
        user_config = details.get("userConfig")
        assert (json.loads(user_config) if user_config else {}) == (expected or {})
    assert _arg(tokens, "--cluster_name") == command.cluster_name(cr)
    if cr.spec.java is not None:
        assert _arg(tokens, "--jar") == doc["spec"]["java"]["jar"]
        assert f"-Dpulsar.function.log.file={name}-${{SHARD_ID}}" in tokens
    elif cr.spec.python is not None:
        assert _arg(tokens, "--py") == doc["spec"]["python"]["py"]
        assert _arg(tokens, "--logging_file") == f"{name}-${{SHARD_ID}}.log"
    else:
        assert _arg(tokens, "--function_file") == doc["spec"]["genericRuntime"]["functionFile"]


# --------------------------------------------------------------------------- FunctionMesh


@examples(20)
@given(mesh_docs())
def test_mesh_children_are_its_entries_owned_by_it(doc: dict[str, Any]) -> None:
    mesh = parse_resource(copy.deepcopy(doc))
    assert isinstance(mesh, FunctionMesh)
    children = render_mesh_children(mesh)
    assert render_mesh_children(parse_resource(copy.deepcopy(doc))) == children  # type: ignore[arg-type]
    entries = [(kind, entry) for field, kind in (("functions", "Function"), ("sources", "Source"),
                                                 ("sinks", "Sink"))
               for entry in doc["spec"].get(field, [])]
    assert len(children) == len(entries)
    mesh_name = doc["metadata"]["name"]
    owner = {"apiVersion": API_VERSION, "kind": "FunctionMesh", "name": mesh_name,
             "uid": doc["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
    for child, (kind, entry) in zip(children, entries, strict=True):
        assert child["apiVersion"] == API_VERSION and child["kind"] == kind
        assert child["metadata"]["name"] == f"{mesh_name}-{entry['name']}"
        assert child["metadata"]["namespace"] == doc["metadata"]["namespace"]
        assert child["metadata"]["labels"] == {MESH_LABEL: mesh_name}
        assert child["metadata"]["ownerReferences"] == [owner]
        assert child["spec"] == entry  # the entry as written, its name included
        # Each child is a valid CR of its kind that renders in turn.
        model = workload({**child, "metadata": {**child["metadata"], "uid": "child-uid"}})
        assert render_service(model)["metadata"]["name"].startswith(child["metadata"]["name"])
