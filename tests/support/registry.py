"""Start and stop Debian's ``docker-registry`` on a free loopback port.

Each registry gets its own temporary storage directory and config file (no
auth, deletes enabled), or htpasswd basic auth when asked. Nothing is shared
with a system-wide registry.
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from soci_indexer import settings
from soci_indexer.oci.auth import Credentials, StaticCredentials
from soci_indexer.oci.client import RegistryClient, RequestObserver, RetryPolicy

REGISTRY_BINARY = "docker-registry"
STARTUP_TIMEOUT = 30.0


class RegistryUnavailable(RuntimeError):
    """docker-registry is not installed or did not come up."""


@dataclass
class LocalRegistry:
    """A running docker-registry; ``host`` is ``127.0.0.1:PORT``."""

    host: str
    root: Path
    login: Credentials | None = None

    def client(
        self,
        *,
        credentials: Credentials | None = None,
        retry: RetryPolicy | None = None,
        observer: RequestObserver | None = None,
        via: str | None = None,
    ) -> RegistryClient:
        """A plain-HTTP client for this registry (with its login, if it has one);
        ``via`` is the ``host:port`` of a proxy in front of it to talk to instead."""
        return RegistryClient(
            via or self.host,
            plain_http=True,
            credentials=StaticCredentials(credentials or self.login),
            retry=retry or RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.2),
            observer=observer,
        )

    def delete_manifest(self, repository: str, digest: str) -> None:
        """Delete a manifest the way an operator (or a lifecycle rule) would; the
        indexer itself never deletes anything, so its client has no such call."""
        conn = http.client.HTTPConnection(self.host, timeout=10)
        try:
            conn.request("DELETE", f"/v2/{repository}/manifests/{digest}")
            status = conn.getresponse().status
        finally:
            conn.close()
        if status != 202:
            raise RuntimeError(f"DELETE {repository}@{digest} answered {status}")

    def served_digest(self, repository: str, reference: str) -> str:
        """The digest of the manifest bytes the registry serves for ``reference``, hashed
        here rather than by the client under test."""
        conn = http.client.HTTPConnection(self.host, timeout=10)
        try:
            conn.request(
                "GET",
                f"/v2/{repository}/manifests/{reference}",
                headers={"Accept": f"{settings.OCI_INDEX}, {settings.OCI_MANIFEST}"},
            )
            answer = conn.getresponse()
            body = answer.read()
        finally:
            conn.close()
        if answer.status != 200:
            raise RuntimeError(f"GET {repository}:{reference} answered {answer.status}")
        return "sha256:" + hashlib.sha256(body).hexdigest()


def installed() -> bool:
    return shutil.which(REGISTRY_BINARY) is not None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _config(root: Path, port: int, htpasswd: Path | None) -> str:
    auth = ""
    if htpasswd is not None:
        auth = f"auth:\n  htpasswd:\n    realm: test-registry\n    path: {htpasswd}\n"
    return (
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"{auth}"
    )


def _htpasswd_line(login: Credentials) -> str:
    import bcrypt  # test-only dependency: docker-registry accepts bcrypt hashes only

    hashed = bcrypt.hashpw(login.password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return f"{login.username}:{hashed}\n"


def _wait_until_up(host: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RegistryUnavailable(
                f"docker-registry exited with {process.returncode}: {log.read_text()[-2000:]}"
            )
        conn = http.client.HTTPConnection(host, timeout=2)
        try:
            conn.request("GET", "/v2/")
            if conn.getresponse().status in (200, 401):
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.05)
    raise RegistryUnavailable(f"docker-registry did not answer on {host} within {STARTUP_TIMEOUT}s")


@contextmanager
def running_registry(*, login: Credentials | None = None) -> Iterator[LocalRegistry]:
    """A fresh docker-registry for the duration of the ``with`` block."""
    binary = shutil.which(REGISTRY_BINARY)
    if binary is None:
        raise RegistryUnavailable(
            "docker-registry is not installed (scripts/install-system-deps.sh installs it)"
        )
    with tempfile.TemporaryDirectory(prefix="soci-registry-") as workdir:
        work = Path(workdir)
        htpasswd = None
        if login is not None:
            htpasswd = work / "htpasswd"
            htpasswd.write_text(_htpasswd_line(login))
        port = free_port()
        config = work / "config.yml"
        config.write_text(_config(work / "storage", port, htpasswd))
        log = work / "registry.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [binary, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT
            )
        try:
            host = f"127.0.0.1:{port}"
            _wait_until_up(host, process, log)
            yield LocalRegistry(host, work / "storage", login)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
