"""Test stand-ins for the official images the project names, built here from Debian's packages.

No image registry is reachable from this project's machines, so the compose suite runs
on images made here: a Debian root filesystem from `debootstrap`, imported into the
engine with `docker import`, and a Dockerfile of ours per image (beside this file) that
keeps the part of the official image's contract docker-compose.yml relies on. They are
test stand-ins, never what production should run.

Each image carries a label with the digest of what it was built from; a later run finds
an image whose label matches and builds nothing.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DIGEST_LABEL = "f-brain.standin.digest"
MIRROR = "http://deb.debian.org/debian"
# The build machine's trust store: its egress may re-sign TLS, and pip in the image must trust it.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEBOOTSTRAP_TIMEOUT_S = 600
BUILD_TIMEOUT_S = 900


class StandinBuildError(RuntimeError):
    """A stand-in image could not be built; the message says which step failed."""


@dataclass(frozen=True)
class Standin:
    """One stand-in: the official image it replaces, its tag here, its Dockerfile folder, its Debian base."""

    replaces: str
    tag: str
    folder: str
    suite: str
    with_host_ca: bool = False

    @property
    def base(self) -> str:
        return base_tag(self.suite)


# RabbitMQ comes in two broker generations: bookworm ships 3.10, trixie ships 4.0.
BROKER_SUITES = {"3": "bookworm", "4": "trixie"}

STANDINS = {
    "python": Standin("python:3.11-slim", "f-brain-standin/python:3.11-slim", "python", "bookworm", with_host_ca=True),
    "postgres": Standin("postgres:15", "f-brain-standin/postgres:15", "postgres", "bookworm"),
    "nginx": Standin("nginx:1.27-alpine", "f-brain-standin/nginx:stable", "nginx", "bookworm"),
    **{
        f"rabbitmq{generation}": Standin(f"rabbitmq:{generation}-management",
                                         f"f-brain-standin/rabbitmq:{generation}-management", "rabbitmq", suite)
        for generation, suite in BROKER_SUITES.items()
    },
}


def base_tag(suite: str) -> str:
    return f"f-brain-standin/debian:{suite}"


def _run(argv: list[str], what: str, timeout: float, **kwargs: object) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired as error:
        raise StandinBuildError(f"{what}: no answer within {timeout:.0f} s") from error
    if done.returncode != 0:
        raise StandinBuildError(f"{what} failed ({done.returncode}): {(done.stderr or done.stdout)[-2000:]}")
    return done


def image_digest(tag: str) -> str | None:
    """The stand-in digest label of an image the engine holds, or None when it has no such image."""
    label = f'{{{{index .Config.Labels "{DIGEST_LABEL}"}}}}'
    done = subprocess.run(["docker", "image", "inspect", "--format", label, tag], capture_output=True, text=True,
                          timeout=60)
    return done.stdout.strip() if done.returncode == 0 else None


def _base_digest(suite: str) -> str:
    return hashlib.sha256(f"debootstrap minbase {suite} {MIRROR}".encode()).hexdigest()[:16]


def ensure_base(suite: str) -> str:
    """A minimal Debian `suite` in the engine, made with debootstrap when missing; returns its tag."""
    tag = base_tag(suite)
    digest = _base_digest(suite)
    if image_digest(tag) == digest:
        return tag
    root = Path(tempfile.mkdtemp(prefix=f"f-brain-{suite}-", dir="/var/tmp"))
    try:
        _run(["debootstrap", "--variant=minbase", suite, str(root), MIRROR], f"debootstrap {suite}",
             DEBOOTSTRAP_TIMEOUT_S)
        shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        try:
            _run(["docker", "import",
                  "--change", f"LABEL {DIGEST_LABEL}={digest}",
                  "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                  "--change", 'CMD ["bash"]',
                  "-", tag], f"docker import of {suite}", BUILD_TIMEOUT_S, stdin=tar.stdout)
        finally:
            tar.stdout.close()
            tar.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return tag


def _context_digest(standin: Standin, base_digest: str) -> str:
    sha = hashlib.sha256(f"{standin.tag} {standin.suite} {base_digest}".encode())
    for path in sorted((HERE / standin.folder).iterdir()):
        sha.update(path.name.encode() + b"\0" + path.read_bytes())
    if standin.with_host_ca:
        sha.update(HOST_CA_BUNDLE.read_bytes())
    return sha.hexdigest()[:16]


def ensure_standin(name: str) -> str:
    """The stand-in `name` (a key of STANDINS) in the engine, built when missing or stale; returns its tag."""
    standin = STANDINS[name]
    ensure_base(standin.suite)
    digest = _context_digest(standin, _base_digest(standin.suite))
    if image_digest(standin.tag) == digest:
        return standin.tag
    with tempfile.TemporaryDirectory(prefix="f-brain-standin-") as context:
        shutil.copytree(HERE / standin.folder, context, dirs_exist_ok=True)
        if standin.with_host_ca:
            shutil.copy(HOST_CA_BUNDLE, Path(context) / "ca-certificates.crt")
        _run(["docker", "build", "--quiet", "--tag", standin.tag, "--label", f"{DIGEST_LABEL}={digest}",
              "--build-arg", f"BASE={standin.base}", context], f"docker build of {standin.tag}", BUILD_TIMEOUT_S)
    prune_replaced(DIGEST_LABEL)
    return standin.tag


def prune_replaced(label: str) -> None:
    """Remove the images a rebuild left untagged (those carrying `label` only), so runs do not pile them up."""
    subprocess.run(["docker", "image", "prune", "--force", "--filter", f"label={label}"], capture_output=True,
                   timeout=120)


def ensure_all(broker_generations: list[str] | None = None) -> dict[str, str]:
    """Every stand-in the compose suite needs, RabbitMQ of the given generations; name -> tag."""
    generations = broker_generations or list(BROKER_SUITES)
    names = [name for name in STANDINS if not name.startswith("rabbitmq")] + [f"rabbitmq{g}" for g in generations]
    return {name: ensure_standin(name) for name in names}
