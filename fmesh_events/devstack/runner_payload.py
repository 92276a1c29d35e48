"""The Java runner image's /pulsar tree, built on the host from Maven Central.

Function Mesh's Java command line expects Pulsar's distribution layout: the instance entry
jar, the instance class path, pulsar-admin (or pulsarctl) for package downloads, and the
sample functions. Pulsar's own java-instance.jar and CLIs are not on Maven Central, so
`build_java_payload` makes equivalents from what is (sources in devstack/runner/):

- pulsar/lib/<groupId>-<artifactId>-<version>[-<classifier>].jar: runner/pom.xml resolved
  (Pulsar's function instance, admin client, connector API, log4j2), named as Pulsar's
  distribution names them;
- pulsar/instances/java-instance.jar: our JavaInstanceMain, its manifest Class-Path naming
  the lib jars of Pulsar's root class loader (runner/instance-root-pom.xml);
- pulsar/bin/pulsar-admin, pulsar/bin/pulsarctl: bash wrappers of
  pulsar/tools/fmesh-pulsar-cli.jar (package and function downloads, pulsarctl's context);
- pulsar/examples/api-examples.jar: pulsar-functions-api-examples;
- pulsar/connectors/fmesh-test-io.jar: test connectors (a counting source, a counting batch
  source and an interval discovery triggerer for it, a logging sink, a work function);
- pulsar/logs, pulsar/tmp, pulsar/conf: empty, the instance writes there.

The result is cached under <cache>/runner-java-<Pulsar version>-<hash of the sources>/.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from fmesh_events.devstack.builds import PULSAR_VERSION, BuildError, _complete, _mark_complete, _run
from fmesh_events.devstack.progress import Progress

RUNNER_PACKAGE = "fmesh_events.devstack"
RUNNER_DIR = "runner"
INSTANCE_MAIN = "org.apache.pulsar.functions.instance.JavaInstanceMain"
CLI_MAIN = "io.fmeshevents.runner.PulsarCli"
EXAMPLES_ARTIFACT = "org.apache.pulsar:pulsar-functions-api-examples"
# Native libraries for machines a runner image never runs on (the image is Linux).
EXCLUDED_CLASSIFIERS = ("osx-x86_64", "osx-aarch_64", "windows-x86_64")
EMPTY_DIRS = ("logs", "tmp", "conf")
JAVA_RELEASE = "17"

# What the payload holds, relative to rootfs/pulsar.
INSTANCE_JAR = "instances/java-instance.jar"
CLI_JAR = "tools/fmesh-pulsar-cli.jar"
EXAMPLES_JAR = "examples/api-examples.jar"
TEST_IO_JAR = "connectors/fmesh-test-io.jar"
# The jars Function Mesh's java -cp names by glob beside java-instance.jar.
CLASSPATH_GLOBS = (
    "com.fasterxml.jackson.dataformat-jackson-dataformat-yaml-*.jar",
    "org.yaml-snakeyaml-*.jar",
)


@dataclass(frozen=True)
class Artifact:
    """One resolved Maven artifact (a line of `mvn dependency:list`)."""

    group_id: str
    artifact_id: str
    version: str
    classifier: str = ""
    type: str = "jar"
    file: Path | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.group_id, self.artifact_id, self.classifier)

    @property
    def lib_name(self) -> str:
        """The file name in Pulsar's distribution lib/: groupId-artifactId-version[-classifier].jar."""
        classifier = f"-{self.classifier}" if self.classifier else ""
        return f"{self.group_id}-{self.artifact_id}-{self.version}{classifier}.{self.type}"


def parse_dependency_list(text: str) -> list[Artifact]:
    """The artifacts of `mvn dependency:list` output (with or without absolute file names).

    Lines look like ``g:a:type[:classifier]:version:scope[:/abs/path]``, maybe followed by
    `` -- module name`` or `` (optional)``; everything else is skipped.
    """
    artifacts: list[Artifact] = []
    for raw in text.splitlines():
        line = raw.strip().split(" -- ", 1)[0].removesuffix("(optional)").strip()
        if not line or " " in line or line.count(":") < 4:
            continue
        path: Path | None = None
        at = line.find(":/")
        if at >= 0:
            path = Path(line[at + 1 :])
            line = line[:at]
        fields = line.split(":")
        if len(fields) == 5:
            group, artifact, kind, version, _scope = fields
            classifier = ""
        elif len(fields) == 6:
            group, artifact, kind, classifier, version, _scope = fields
        else:
            continue
        artifacts.append(Artifact(group, artifact, version, classifier, kind, path))
    return artifacts


def manifest(main_class: str | None, class_path: Iterable[str] = ()) -> bytes:
    """A JAR manifest; lines longer than 72 bytes continue on the next line after a space,
    as the JAR specification requires (a long Class-Path would otherwise be refused)."""
    headers = [("Manifest-Version", "1.0"), ("Created-By", "fmesh-events runner_payload")]
    if main_class:
        headers.append(("Main-Class", main_class))
    entries = list(class_path)
    if entries:
        headers.append(("Class-Path", " ".join(entries)))
    lines: list[bytes] = []
    for name, value in headers:
        data = f"{name}: {value}".encode()
        lines.append(data[:72])
        data = data[72:]
        while data:
            lines.append(b" " + data[:71])
            data = data[71:]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def root_class_path(root: Iterable[Artifact], lib: Iterable[Artifact]) -> list[str]:
    """java-instance.jar's Class-Path: the lib jars of the artifacts of the root class loader.

    The lib's version of each wins (the lib is what runs); a root artifact missing from the
    lib is a build error, not a silently smaller root class loader.
    """
    by_key = {artifact.key: artifact for artifact in lib}
    missing = sorted(":".join(a.key).rstrip(":") for a in root if a.key not in by_key)
    if missing:
        raise BuildError(f"the instance's root class loader needs {', '.join(missing)}, "
                         "which runner/pom.xml does not resolve")
    return sorted({f"../lib/{by_key[a.key].lib_name}" for a in root})


def _runner_files() -> Iterator[tuple[str, Traversable]]:
    """(relative path, file) of every file under devstack/runner, sorted."""
    def walk(node: Traversable, prefix: str) -> Iterator[tuple[str, Traversable]]:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name == "__pycache__":
                continue
            rel = f"{prefix}{child.name}"
            if child.is_dir():
                yield from walk(child, rel + "/")
            else:
                yield rel, child

    yield from walk(resources.files(RUNNER_PACKAGE) / RUNNER_DIR, "")


def sources_hash() -> str:
    """A short hash of the runner sources and the Pulsar version: a new one rebuilds."""
    digest = hashlib.sha256(PULSAR_VERSION.encode())
    for rel, file in _runner_files():
        digest.update(b"\0" + rel.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:12]


def payload_dir(cache: Path) -> Path:
    return cache / f"runner-java-{PULSAR_VERSION}-{sources_hash()}"


def write_jar(path: Path, files: Iterable[tuple[str, Path]], main_class: str | None = None,
              class_path: Iterable[str] = ()) -> None:
    """A JAR of `files` (name in the jar, file on disk), manifest first, entries sorted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as jar:
        jar.writestr("META-INF/MANIFEST.MF", manifest(main_class, class_path))
        for name, source in sorted(files):
            jar.write(source, name)
    tmp.replace(path)


def _tree(directory: Path) -> list[tuple[str, Path]]:
    return [(p.relative_to(directory).as_posix(), p) for p in directory.rglob("*") if p.is_file()]


def _javac(sources: Path, classes: Path, class_path: str | None, home: Path, progress: Progress,
           what: str) -> None:
    files = sorted(str(p) for p in sources.rglob("*.java"))
    if not files:
        raise BuildError(f"{what}: no Java sources under {sources}")
    classes.mkdir(parents=True, exist_ok=True)
    cmd = ["javac", "--release", JAVA_RELEASE, "-encoding", "UTF-8", "-nowarn", "-d", str(classes)]
    if class_path:
        cmd += ["-cp", class_path]
    _run([*cmd, *files], home, progress, what)


def _resolve(pom: str, home: Path, progress: Progress, what: str, absolute: bool) -> list[Artifact]:
    listing = home / f"{pom}.dependencies.txt"
    cmd = ["mvn", "-B", "-q", "-s", "settings.xml", "-f", pom, "dependency:list",
           f"-DoutputFile={listing}", "-DincludeScope=runtime",
           f"-DexcludeClassifiers={','.join(EXCLUDED_CLASSIFIERS)}"]
    if absolute:
        cmd.append("-DoutputAbsoluteArtifactFilename=true")
    _run(cmd, home, progress, what)
    artifacts = parse_dependency_list(listing.read_text())
    if not artifacts:
        raise BuildError(f"{what}: no artifacts in {listing}")
    return artifacts


def _fetch_examples(home: Path, target: Path, progress: Progress) -> None:
    out = home / "examples"
    shutil.rmtree(out, ignore_errors=True)
    _run(["mvn", "-B", "-q", "-s", "settings.xml", "-f", "pom.xml", "dependency:copy",
          f"-Dartifact={EXAMPLES_ARTIFACT}:{PULSAR_VERSION}", f"-DoutputDirectory={out}",
          "-Dmdep.useBaseVersion=true"], home, progress, "maven fetch api examples")
    jars = list(out.glob("*.jar"))
    if len(jars) != 1:
        raise BuildError(f"expected one pulsar-functions-api-examples jar in {out}, found {jars}")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(jars[0], target)


def _copy_sources(src: Path) -> None:
    shutil.rmtree(src, ignore_errors=True)
    for rel, file in _runner_files():
        dest = src / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(file.read_bytes())


def _require_tools() -> None:
    missing = [tool for tool in ("mvn", "java", "javac") if shutil.which(tool) is None]
    if missing:
        raise BuildError(f"the Java runner payload needs {', '.join(missing)} on PATH: "
                         "apt-get install maven openjdk-17-jdk-headless")


def build_java_payload(cache: Path, progress: Progress) -> Path:
    """Build (once) the Java runner's tree and return its rootfs/ (which holds pulsar/)."""
    home = payload_dir(cache)
    rootfs = home / "rootfs"
    if _complete(home):
        return rootfs
    _require_tools()
    home.mkdir(parents=True, exist_ok=True)
    # The image build and the tests may both ask for it at once: one builds, the other waits.
    with (home / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _complete(home):
            _build(home, rootfs, progress)
    return rootfs


def _build(home: Path, rootfs: Path, progress: Progress) -> None:
    started = time.monotonic()
    progress.say(f"building the Java runner payload (Pulsar {PULSAR_VERSION}) in {home}")
    src = home / "src"
    _copy_sources(src)
    for pom in ("pom.xml", "instance-root-pom.xml"):
        (home / pom).write_text((src / pom).read_text().replace("@PULSAR_VERSION@", PULSAR_VERSION))
    (home / "settings.xml").write_text(
        (resources.files(RUNNER_PACKAGE) / "assets" / "maven-settings.xml").read_text()
    )
    shutil.rmtree(rootfs, ignore_errors=True)
    pulsar = rootfs / "pulsar"

    lib_artifacts = _resolve("pom.xml", home, progress, "maven resolve runner lib", absolute=True)
    lib = pulsar / "lib"
    lib.mkdir(parents=True)
    for artifact in lib_artifacts:
        if artifact.file is None or not artifact.file.is_file():
            raise BuildError(f"maven listed {artifact.lib_name} without a file ({artifact.file})")
        shutil.copyfile(artifact.file, lib / artifact.lib_name)
    for glob in CLASSPATH_GLOBS:
        if len(list(lib.glob(glob))) != 1:
            raise BuildError(f"Function Mesh's java -cp needs exactly one lib/{glob}")
    progress.say(f"  {len(lib_artifacts)} jars in pulsar/lib")

    root = _resolve("instance-root-pom.xml", home, progress, "maven resolve instance root", absolute=False)
    _fetch_examples(home, pulsar / EXAMPLES_JAR, progress)

    build = home / "classes"
    shutil.rmtree(build, ignore_errors=True)
    lib_class_path = f"{lib}/*"
    _javac(src / "java" / "instance", build / "instance", None, home, progress, "javac instance main")
    write_jar(pulsar / INSTANCE_JAR, _tree(build / "instance"), INSTANCE_MAIN,
              root_class_path(root, lib_artifacts))
    _javac(src / "java" / "cli", build / "cli", lib_class_path, home, progress, "javac pulsar cli")
    write_jar(pulsar / CLI_JAR, [*_tree(build / "cli"), ("log4j2.xml", src / "java" / "cli" / "log4j2.xml")],
              CLI_MAIN)
    _javac(src / "java" / "testio", build / "testio", lib_class_path, home, progress, "javac test io")
    descriptor = "META-INF/services/pulsar-io.yaml"
    testio = [*_tree(build / "testio"), (descriptor, src / "java" / "testio" / descriptor)]
    write_jar(pulsar / TEST_IO_JAR, testio)

    bin_dir = pulsar / "bin"
    bin_dir.mkdir(parents=True)
    for script in ("pulsar-admin", "pulsarctl"):
        shutil.copyfile(src / "bin" / script, bin_dir / script)
        (bin_dir / script).chmod(0o755)
    for name in EMPTY_DIRS:
        (pulsar / name).mkdir(parents=True, exist_ok=True)
    _mark_complete(home, {"pulsar": PULSAR_VERSION, "sources": sources_hash()})
    progress.say(f"Java runner payload ready: {rootfs} ({payload_size(rootfs) / 1e6:.0f} MB) "
                 f"in {time.monotonic() - started:.0f}s")


def payload_size(rootfs: Path) -> int:
    """Bytes of the files under `rootfs` (what the image's COPY adds)."""
    return sum(os.path.getsize(p) for p in rootfs.rglob("*") if p.is_file() and not p.is_symlink())
