"""Where registry credentials come from: a ``CredentialSource`` gives ``Credentials``
(or None, for anonymous access) whenever the client needs them.

``DockerConfigCredentials`` reads the Docker config file, the default for any
registry; ``StaticCredentials`` holds fixed ones. Amazon ECR's come from
``soci_indexer.aws.ecr``, which knows AWS; nothing here does.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from soci_indexer.errors import AuthError


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def basic(self) -> str:
        pair = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


class CredentialSource(Protocol):
    def credentials(self) -> Credentials | None:
        """Credentials for the registry, or None for anonymous access."""


@dataclass(frozen=True, slots=True)
class StaticCredentials:
    """Fixed credentials (tests, or a caller that already has them)."""

    value: Credentials | None

    def credentials(self) -> Credentials | None:
        return self.value


class DockerConfigCredentials:
    """``auths`` entries of the Docker config file (``$DOCKER_CONFIG/config.json`` or
    ``~/.docker/config.json``). Credential helpers are not run: when only a helper
    is configured for the host, asking for credentials says so."""

    def __init__(self, host: str, path: Path | None = None) -> None:
        self._host = host
        self._path = path or _docker_config_path()

    def credentials(self) -> Credentials | None:
        config = self._load()
        for key, entry in (config.get("auths") or {}).items():
            if _auth_host(key) == self._host and isinstance(entry, dict):
                found = _auth_entry(entry)
                if found is not None:
                    return found
        helper = (config.get("credHelpers") or {}).get(self._host) or config.get("credsStore")
        if helper:
            raise AuthError(
                f"credentials for {self._host} are kept by the Docker credential helper "
                f"{helper!r}, which soci-indexer does not run; log in with an `auths` entry "
                f"in {self._path} instead"
            )
        return None

    def _load(self) -> dict[str, Any]:
        try:
            loaded = json.loads(self._path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise AuthError(f"cannot read Docker config {self._path}: {exc}") from None
        return loaded if isinstance(loaded, dict) else {}


def _docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _auth_host(key: str) -> str:
    """``auths`` keys are hosts or URLs (``https://index.docker.io/v1/`` for Docker Hub)."""
    host = urllib.parse.urlsplit(key).netloc if "://" in key else key.split("/", 1)[0]
    return "registry-1.docker.io" if host in ("index.docker.io", "docker.io") else host


def _auth_entry(entry: Mapping[str, Any]) -> Credentials | None:
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            username, sep, password = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise AuthError("a Docker config `auth` entry is not base64 user:password") from None
        if sep:
            return Credentials(username, password)
    user, secret = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(secret, str):
        return Credentials(user, secret)
    return None
