"""The pure parts of the Java runner payload build: Maven listings, lib names, the manifest."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from fmesh_events.devstack import runner_payload
from fmesh_events.devstack.builds import PULSAR_VERSION, BuildError
from fmesh_events.devstack.runner_payload import (
    Artifact,
    manifest,
    parse_dependency_list,
    root_class_path,
    write_jar,
)

LISTING = """
The following files have been resolved:
   org.apache.pulsar:pulsar-io-core:jar:4.0.7:compile:/m2/org/apache/pulsar/pulsar-io-core-4.0.7.jar
   io.netty:netty-tcnative-boringssl-static:jar:linux-x86_64:2.0.73.Final:compile:/m2/n/tc.jar
   org.apache.pulsar:bouncy-castle-bc:jar:pkg:4.0.7:compile:/m2/b/bc.jar -- module bouncy.castle
   org.slf4j:slf4j-api:jar:2.0.13:compile -- module org.slf4j [auto]
   com.google.code.findbugs:jsr305:jar:3.0.2:compile (optional)
none
[INFO] Building pulsar-java-runner 1
"""


def test_dependency_list_lines_become_artifacts() -> None:
    artifacts = parse_dependency_list(LISTING)
    assert artifacts == [
        Artifact("org.apache.pulsar", "pulsar-io-core", "4.0.7", "", "jar",
                 Path("/m2/org/apache/pulsar/pulsar-io-core-4.0.7.jar")),
        Artifact("io.netty", "netty-tcnative-boringssl-static", "2.0.73.Final", "linux-x86_64", "jar",
                 Path("/m2/n/tc.jar")),
        Artifact("org.apache.pulsar", "bouncy-castle-bc", "4.0.7", "pkg", "jar", Path("/m2/b/bc.jar")),
        Artifact("org.slf4j", "slf4j-api", "2.0.13"),
        Artifact("com.google.code.findbugs", "jsr305", "3.0.2"),
    ]


@pytest.mark.parametrize(
    ("artifact", "name"),
    [
        (Artifact("org.apache.pulsar", "pulsar-broker", "4.0.7"),
         "org.apache.pulsar-pulsar-broker-4.0.7.jar"),
        (Artifact("io.netty", "netty-transport-native-epoll", "4.1.127.Final", "linux-x86_64"),
         "io.netty-netty-transport-native-epoll-4.1.127.Final-linux-x86_64.jar"),
        # The names Function Mesh's java -cp globs for.
        (Artifact("com.fasterxml.jackson.dataformat", "jackson-dataformat-yaml", "2.17.2"),
         "com.fasterxml.jackson.dataformat-jackson-dataformat-yaml-2.17.2.jar"),
        (Artifact("org.yaml", "snakeyaml", "2.0"), "org.yaml-snakeyaml-2.0.jar"),
    ],
)
def test_lib_names_follow_pulsars_distribution(artifact: Artifact, name: str) -> None:
    assert artifact.lib_name == name


def _unfold(text: bytes) -> dict[str, str]:
    """Read a manifest back as the JAR specification says: a leading space continues a line."""
    headers: dict[str, str] = {}
    last = ""
    for line in text.decode().split("\r\n"):
        if line.startswith(" "):
            headers[last] += line[1:]
        elif line:
            last, _, value = line.partition(": ")
            headers[last] = value
    return headers


def test_manifest_lines_fit_72_bytes_and_unfold_to_the_class_path() -> None:
    entries = [f"../lib/org.example-artifact-number-{i}-1.0.0.jar" for i in range(40)]
    text = manifest("org.example.Main", entries)
    assert text.endswith(b"\r\n\r\n")
    assert all(len(line) <= 72 for line in text.split(b"\r\n"))
    headers = _unfold(text)
    assert headers["Main-Class"] == "org.example.Main"
    assert headers["Class-Path"].split(" ") == entries
    assert headers["Manifest-Version"] == "1.0"


def test_manifest_without_main_class_or_class_path() -> None:
    assert set(_unfold(manifest(None))) == {"Manifest-Version", "Created-By"}


def test_root_class_path_takes_the_lib_versions() -> None:
    root = [Artifact("org.apache.logging.log4j", "log4j-api", "2.23.1"),
            Artifact("org.slf4j", "slf4j-api", "2.0.13")]
    lib = [
        Artifact("org.apache.logging.log4j", "log4j-api", "2.24.3"),
        Artifact("org.slf4j", "slf4j-api", "2.0.13"),
        Artifact("org.apache.pulsar", "pulsar-broker", "4.0.7"),
    ]
    assert root_class_path(root, lib) == [
        "../lib/org.apache.logging.log4j-log4j-api-2.24.3.jar",
        "../lib/org.slf4j-slf4j-api-2.0.13.jar",
    ]


def test_root_class_path_refuses_an_artifact_missing_from_the_lib() -> None:
    root = [Artifact("org.apache.avro", "avro", "1.11.4"),
            Artifact("io.netty", "netty-x", "1", "linux-x86_64")]
    with pytest.raises(BuildError, match=r"needs io\.netty:netty-x:linux-x86_64, org\.apache\.avro:avro, "):
        root_class_path(root, [])


def test_jar_has_the_manifest_first(tmp_path: Path) -> None:
    (tmp_path / "A.class").write_bytes(b"\xca\xfe\xba\xbe")
    jar = tmp_path / "out" / "a.jar"
    write_jar(jar, [("pkg/A.class", tmp_path / "A.class")], "pkg.A", ["../lib/x.jar"])
    with zipfile.ZipFile(jar) as archive:
        assert archive.namelist() == ["META-INF/MANIFEST.MF", "pkg/A.class"]
        assert _unfold(archive.read("META-INF/MANIFEST.MF"))["Class-Path"] == "../lib/x.jar"
        assert archive.read("pkg/A.class") == b"\xca\xfe\xba\xbe"


def test_sources_hash_covers_every_runner_file(monkeypatch: pytest.MonkeyPatch) -> None:
    files = dict(runner_payload._runner_files())
    for needed in ("pom.xml", "instance-root-pom.xml", "bin/pulsar-admin", "bin/pulsarctl",
                   "java/instance/org/apache/pulsar/functions/instance/JavaInstanceMain.java",
                   "java/cli/io/fmeshevents/runner/PulsarCli.java",
                   "java/testio/io/fmeshevents/testio/CountingSource.java",
                   "java/testio/io/fmeshevents/testio/LoggingSink.java",
                   "java/testio/io/fmeshevents/testio/CountingBatchSource.java",
                   "java/testio/io/fmeshevents/testio/IntervalTriggerer.java",
                   "java/testio/META-INF/services/pulsar-io.yaml"):
        assert needed in files, needed
    assert "@PULSAR_VERSION@" in files["pom.xml"].read_text()
    first = runner_payload.sources_hash()
    assert first == runner_payload.sources_hash() and len(first) == 12
    monkeypatch.setattr(runner_payload, "PULSAR_VERSION", PULSAR_VERSION + "-other")
    assert runner_payload.sources_hash() != first


def test_payload_is_cached_by_version_and_sources(tmp_path: Path) -> None:
    home = runner_payload.payload_dir(tmp_path)
    assert home.parent == tmp_path
    assert home.name == f"runner-java-{PULSAR_VERSION}-{runner_payload.sources_hash()}"
