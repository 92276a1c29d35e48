"""Images for the real node, built here from no outside registry and pushed to the stack's
loopback registry under the names Function Mesh's defaults and samples use.

- A Debian bookworm base made with debootstrap from Debian's packages, imported into Docker
  as `debian:bookworm-slim` (what the runner Dockerfile starts from).
- `pause`: the sandbox image, a static Go program that waits for a signal.
- The Java runner: Debian's JRE plus Pulsar's function instance from Maven Central
  (runner_payload.py), our pulsar-admin and pulsarctl, the api-examples jar and our test
  connectors; one image under every runner and sample name (`JAVA_RUNNER_NAMES`).

Docker (Debian's docker.io) builds them; `ensure_dockerd` starts an engine when none runs.
Each image is rebuilt only when its inputs change (a hash of them is its stamp), and pushed
only when the registry does not hold it yet; the registry's storage lives in the cache, so a
new stack starts with every image in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from fmesh_events.devstack.builds import (
    KUBERNETES_VERSION,
    PULSAR_VERSION,
    BuildError,
    _complete,
    _go_env,
    _mark_complete,
    _run,
)
from fmesh_events.devstack.progress import Progress

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = os.environ.get("FMESH_DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE_IMAGE = "debian:bookworm-slim"
PAUSE_IMAGE = ("pause", "3.10")  # registry.k8s.io/pause:3.10
# Function Mesh's default runner tag (reconcile.command.DEFAULT_RUNNER_TAG), the broker's
# version, and the tags its samples and docs name.
RUNNER_TAGS = ("2.10.0.0-rc10", PULSAR_VERSION, "2.9.2.23", "3.0.0", "3.1.0", "4.0.0", "latest")
JAVA_RUNNER_REPOSITORIES = (
    "streamnative/pulsar-functions-java-runner",
    "streamnative/pulsar-functions-java-sample",
    "streamnative/pulsar-functions-pulsarctl-java-runner",
    "streamnative/pulsar-functions-sn-java-runner",
)
# Pulsar's own images carry the same instance; the examples name them at the broker's version.
PULSAR_IMAGE_NAMES = (("apachepulsar/pulsar", PULSAR_VERSION), ("apachepulsar/pulsar-all", PULSAR_VERSION))


def java_runner_names() -> list[tuple[str, str]]:
    """Every (repository, tag) the Java runner image is pushed under (docker.io paths)."""
    names = [(repo, tag) for repo in JAVA_RUNNER_REPOSITORIES for tag in RUNNER_TAGS]
    return names + list(PULSAR_IMAGE_NAMES)


def _docker(*args: str, input: bytes | None = None, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(["docker", *args], input=input, capture_output=True, check=False,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        error = proc.stderr.decode(errors="replace")[-2000:]
        raise BuildError(f"docker {' '.join(args[:3])} failed: {error}")
    return proc


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


def ensure_dockerd(cache: Path, progress: Progress) -> None:
    """A Docker engine for the image builds: the one running, else Debian's dockerd started
    in the background (it outlives the stack: images are kept in its store)."""
    if docker_answers():
        return
    if shutil.which("dockerd") is None:
        raise BuildError("the real node's images are built with Docker: apt-get install docker.io")
    progress.say("starting dockerd (Debian's docker.io); log in " + str(cache / "dockerd.log"))
    log = (cache / "dockerd.log").open("ab")
    subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                     start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if docker_answers():
            return
        time.sleep(1)
    tail = (cache / "dockerd.log").read_text(errors="replace").splitlines()[-15:]
    raise BuildError("dockerd did not answer within 60 s:\n" + "\n".join(tail))


def _image_exists(name: str) -> bool:
    return _docker("image", "inspect", name, check=False).returncode == 0


def _label(name: str, key: str) -> str | None:
    proc = _docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{key}"}}}}', name,
                   check=False)
    value = proc.stdout.decode().strip()
    return value if proc.returncode == 0 and value and value != "<no value>" else None


def ensure_debian_rootfs(cache: Path, progress: Progress) -> Path:
    home = cache / f"debian-{DEBIAN_SUITE}"
    rootfs = home / "rootfs"
    if _complete(home):
        return rootfs
    if shutil.which("debootstrap") is None:
        raise BuildError("the runner images' base is made with debootstrap: apt-get install debootstrap")
    progress.say(f"making a Debian {DEBIAN_SUITE} base with debootstrap from {DEBIAN_MIRROR} "
                 "(first time only)")
    shutil.rmtree(rootfs, ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    _run(["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(rootfs), DEBIAN_MIRROR],
         home, progress, "debootstrap")
    # Like Docker's debian images: no apt caches kept, no docs.
    shutil.rmtree(rootfs / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    _mark_complete(home, {"debian": DEBIAN_SUITE})
    return rootfs


def ensure_base_image(cache: Path, progress: Progress) -> None:
    """`debian:bookworm-slim` in Docker's store, imported from our debootstrap tree."""
    rootfs = ensure_debian_rootfs(cache, progress)
    stamp = (rootfs.parent / ".complete").read_text().strip()
    if _image_exists(BASE_IMAGE) and _label(BASE_IMAGE, "io.fmesh-events.base") == _digest([stamp]):
        return
    progress.say(f"importing the Debian tree as {BASE_IMAGE}")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."],
                           stdout=subprocess.PIPE)
    assert tar.stdout is not None
    proc = subprocess.run(
        ["docker", "import", "--change", f"LABEL io.fmesh-events.base={_digest([stamp])}",
         "--change", 'CMD ["bash"]', "-", BASE_IMAGE],
        stdin=tar.stdout, capture_output=True, check=False,
    )
    tar.wait()
    if proc.returncode != 0 or tar.returncode != 0:
        raise BuildError(f"docker import of {rootfs} failed: {proc.stderr.decode(errors='replace')}")


def _digest(parts: Iterable[str | bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _tree_digest(root: Path) -> str:
    """Names, sizes and modification times of a tree: enough to notice a rebuilt payload."""
    entries = []
    for path in sorted(root.rglob("*")):
        stat = path.lstat()
        entries.append(f"{path.relative_to(root)}:{stat.st_size}:{int(stat.st_mtime)}")
    return _digest(entries)


def _asset(name: str) -> str:
    return (resources.files("fmesh_events.devstack") / "assets" / "images" / name).read_text()


def _build(tag: str, dockerfile: str, context: Path, inputs: str, progress: Progress,
           what: str) -> None:
    """docker build unless the image at `tag` was built from the same inputs."""
    key = _digest([dockerfile, inputs])
    if _image_exists(tag) and _label(tag, "io.fmesh-events.inputs") == key:
        return
    progress.say(f"building image {tag} ({what})")
    (context / "Dockerfile").write_text(dockerfile)
    started = time.monotonic()
    proc = subprocess.run(
        ["docker", "build", "--label", f"io.fmesh-events.inputs={key}", "-t", tag, str(context)],
        capture_output=True, check=False, env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).decode(errors="replace").splitlines()[-30:]
        raise BuildError(f"docker build {tag} failed:\n" + "\n".join(out))
    progress.say(f"  image {tag}: built in {int(time.monotonic() - started)}s")


def ensure_pause_binary(cache: Path, progress: Progress) -> Path:
    home = cache / f"pause-{KUBERNETES_VERSION}"
    binary = home / "pause"
    if _complete(home) and binary.exists():
        return binary
    src = home / "src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "go.mod").write_text("module fmesh-events/pause\n\ngo 1.24.0\n")
    (src / "main.go").write_text(_asset("pause.go"))
    _run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(binary), "."],
         src, progress, "go build pause", _go_env())
    _mark_complete(home, {"pause": KUBERNETES_VERSION})
    return binary


def build_images(cache: Path, progress: Progress) -> dict[str, list[tuple[str, str]]]:
    """Build what the node needs; returns local image -> the (repository, tag) names to push."""
    from fmesh_events.devstack.runner_payload import build_java_payload

    ensure_dockerd(cache, progress)
    ensure_base_image(cache, progress)
    with tempfile.TemporaryDirectory(prefix="fmesh-pause-") as tmp:
        context = Path(tmp)
        binary = ensure_pause_binary(cache, progress)
        shutil.copy2(binary, context / "pause")
        _build("fmesh-events/pause:local", _asset("pause.Dockerfile"), context,
               _digest([binary.read_bytes()]), progress, "sandbox")
    payload = build_java_payload(cache, progress)
    java_tag = f"fmesh-events/java-runner:{PULSAR_VERSION}"
    _build(java_tag, _asset("java-runner.Dockerfile"), payload,
           _tree_digest(payload), progress, "Debian JRE + Pulsar's function instance")
    return {
        "fmesh-events/pause:local": [PAUSE_IMAGE],
        java_tag: java_runner_names(),
    }


def _registry_has(registry: str, repository: str, tag: str, image_id: str) -> bool:
    """The registry holds `repository:tag` as built from the local image `image_id`."""
    url = f"http://{registry}/v2/{repository}/manifests/{tag}"
    request = urllib.request.Request(url, method="GET", headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            manifest = json.loads(response.read())
    except (urllib.error.URLError, ValueError):
        return False
    config = manifest.get("config", {}).get("digest")
    return bool(config) and config == image_id


def push_images(registry: str, images: dict[str, list[tuple[str, str]]], progress: Progress) -> None:
    """Push each local image under its names, skipping those the registry already holds."""
    for local_name, names in images.items():
        image_id = _docker("image", "inspect", "--format", "{{.Id}}", local_name).stdout.decode().strip()
        missing = [(repo, tag) for repo, tag in names if not _registry_has(registry, repo, tag, image_id)]
        if not missing:
            continue
        progress.say(f"pushing {local_name} to the node's registry as {len(missing)} name(s)")
        for repo, tag in missing:
            target = f"{registry}/{repo}:{tag}"
            _docker("tag", local_name, target)
            _docker("push", target)
            _docker("rmi", target, check=False)  # the tag only; the image stays


def registry_config(storage: Path, port: int) -> str:
    return f"""version: 0.1
log:
  level: warn
  accesslog: {{disabled: true}}
storage:
  filesystem: {{rootdirectory: {storage}}}
  delete: {{enabled: true}}
http:
  addr: 127.0.0.1:{port}
"""


OPERATOR_IMAGE_REPOSITORY = "fmesh-events/fmesh-events"  # ghcr.io/fmesh-events/fmesh-events
PYTHON_BASE_IMAGE = "python:3.11-slim-bookworm"
# The machine's CA bundle: the package registries are reached through it (pip's `cert`).
CA_BUNDLE = Path(os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt")


def ensure_python_base(cache: Path, progress: Progress) -> None:
    """The operator Dockerfile's base: pulled when a registry answers, else made here."""
    if _image_exists(PYTHON_BASE_IMAGE) and _label(PYTHON_BASE_IMAGE, "io.fmesh-events.inputs") is None:
        return  # the real one, pulled by the user
    ensure_base_image(cache, progress)
    with tempfile.TemporaryDirectory(prefix="fmesh-python-base-") as tmp:
        _build(PYTHON_BASE_IMAGE, _asset("python-base.Dockerfile"), Path(tmp), "", progress,
               "local stand-in: Debian's Python 3.11")


def _buildkit_client() -> str:
    """A docker client that can build with BuildKit (secrets): one with the buildx plugin, or
    Debian's docker.io 20.10 client, whose BuildKit is built in."""
    candidates = [c for c in (shutil.which("docker"), "/usr/bin/docker") if c and Path(c).exists()]
    for client in candidates:
        if subprocess.run([client, "buildx", "version"], capture_output=True, check=False).returncode == 0:
            return client
    for client in candidates:
        version = subprocess.run([client, "version", "--format", "{{.Client.Version}}"],
                                 capture_output=True, text=True, check=False).stdout
        if version.startswith("20."):
            return client
    raise BuildError("building the operator image needs BuildKit: install the docker buildx plugin "
                     "or Debian's docker.io client")


def build_operator_image(source: Path, version: str, cache: Path, progress: Progress) -> str:
    """`docker build` of the operator's Dockerfile in `source` (a checkout); returns the local
    tag. The CA bundle goes in as a BuildKit secret, never into a layer."""
    ensure_dockerd(cache, progress)
    ensure_python_base(cache, progress)
    tag = f"{OPERATOR_IMAGE_REPOSITORY}:{version}"
    progress.say(f"building the operator image {tag} from {source}")
    started = time.monotonic()
    cmd = [_buildkit_client(), "build", "-t", tag, str(source)]
    if CA_BUNDLE.exists():
        cmd[2:2] = ["--secret", f"id=pip-cert,src={CA_BUNDLE}"]
    proc = subprocess.run(cmd, capture_output=True, check=False,
                          env={**os.environ, "DOCKER_BUILDKIT": "1"})
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).decode(errors="replace").splitlines()[-30:]
        raise BuildError(f"docker build {tag} failed:\n" + "\n".join(out))
    progress.say(f"  operator image {tag}: built in {int(time.monotonic() - started)}s")
    return tag
