"""Where registry credentials come from: the Docker config file, or nowhere."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from soci_indexer.errors import AuthError
from soci_indexer.oci.auth import Credentials, DockerConfigCredentials

LOGIN = Credentials("builder", "s3cret-pass")


def test_docker_config_auths_supply_the_login(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    encoded = base64.b64encode(b"builder:s3cret-pass").decode()
    config.write_text(json.dumps({"auths": {"https://registry.example:5000": {"auth": encoded}}}))
    found = DockerConfigCredentials("registry.example:5000", config).credentials()
    assert found == LOGIN


def test_a_credential_helper_is_reported_as_unsupported(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"credHelpers": {"registry.example": "ecr-login"}}))
    with pytest.raises(AuthError, match="ecr-login"):
        DockerConfigCredentials("registry.example", config).credentials()


def test_no_docker_config_means_anonymous(tmp_path: Path) -> None:
    assert (
        DockerConfigCredentials("registry.example", tmp_path / "absent.json").credentials() is None
    )
