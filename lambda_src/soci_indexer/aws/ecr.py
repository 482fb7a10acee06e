"""Amazon ECR registries: their hosts, and credentials from ``ecr:GetAuthorizationToken``.

The one place that knows the shape of an ECR registry host, both ways:
``registry_host`` builds it from an account and region (the only hosts the
Lambda handler talks to) and ``parse_registry_host`` reads them back from one
(so the CLI logs in to ECR through AWS). boto3 is imported only when a token
is really needed: the Lambda runtime ships it, the CLI has it as an extra.
"""

from __future__ import annotations

import base64
import re
import threading
import time

from soci_indexer.errors import AuthError, InvalidEvent
from soci_indexer.oci.auth import Credentials, CredentialSource, DockerConfigCredentials
from soci_indexer.oci.client import RegistryClient

# ASCII classes on purpose: ``\d`` would also accept other scripts' digits.
ACCOUNT = re.compile(r"[0-9]{12}")
# Commercial, GovCloud and China regions: us-east-1, us-gov-west-1, cn-north-1.
# Partitions with other DNS suffixes (ISO, sovereign clouds) are refused, not guessed.
REGION = re.compile(r"[a-z]{2}(?:-gov)?-[a-z]+-[0-9]{1,2}")
# Repository names as ECR documents them (stricter than the OCI grammar: no "__" or "--").
REPOSITORY_NAME = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")
MAX_REPOSITORY_NAME = 256
# Registry hosts as AWS documents them, FIPS and dual-stack-style dashes included.
_HOST = re.compile(
    rf"(?P<account>{ACCOUNT.pattern})\.dkr[.-]ecr(?:-fips)?\.(?P<region>{REGION.pattern})"
    r"\.amazonaws\.com(?:\.cn)?"
)


def registry_host(account: str, region: str) -> str:
    """The ECR registry of ``account`` in ``region``: the only host the handler talks to."""
    check_account(account)
    check_region(region)
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{suffix}"


def parse_registry_host(host: str) -> tuple[str, str] | None:
    """``(account, region)`` of an ECR registry host, or None for any other registry."""
    match = _HOST.fullmatch(host)
    return (match["account"], match["region"]) if match else None


def is_repository_name(name: str) -> bool:
    return len(name) <= MAX_REPOSITORY_NAME and REPOSITORY_NAME.fullmatch(name) is not None


def check_account(account: str) -> None:
    if not ACCOUNT.fullmatch(account):
        raise InvalidEvent(f"account {account!r} is not a 12-digit AWS account id")


def check_region(region: str) -> None:
    if not REGION.fullmatch(region):
        raise InvalidEvent(f"region {region!r} is not an AWS region with a known ECR endpoint")


class EcrCredentials:
    """Amazon ECR: ``ecr:GetAuthorizationToken`` for the registry's account (boto3, lazily).

    Tokens last 12 hours; one is reused until 5 minutes before it expires.
    """

    def __init__(self, account: str, region: str) -> None:
        self._account = account
        self._region = region
        self._cached: Credentials | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def credentials(self) -> Credentials | None:
        with self._lock:
            if self._cached is None or time.time() > self._expires:
                self._cached, self._expires = self._fetch()
            return self._cached

    def _fetch(self) -> tuple[Credentials, float]:
        try:
            import boto3  # the Lambda runtime ships it; imported only for ECR hosts
        except ImportError:
            raise AuthError(
                "boto3 is needed for Amazon ECR credentials: pip install boto3"
            ) from None
        try:
            ecr = boto3.client("ecr", region_name=self._region)
            reply = ecr.get_authorization_token(registryIds=[self._account])
        except Exception as exc:  # botocore's errors are many; all mean "no token"
            raise AuthError(
                f"ECR refused an authorization token for account {self._account} "
                f"in {self._region}: {type(exc).__name__}"
            ) from None
        try:
            data = reply["authorizationData"][0]
            decoded = base64.b64decode(data["authorizationToken"], validate=True).decode()
            expires = data["expiresAt"].timestamp() - 300
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            decoded, expires = "", 0.0
        username, sep, password = decoded.partition(":")
        if not sep:
            raise AuthError(
                f"ECR sent no usable authorization token for account {self._account} "
                f"in {self._region}; retry, and check the ECR endpoint if it persists"
            )
        return Credentials(username, password), expires


def credentials_for(host: str) -> CredentialSource:
    """ECR hosts authenticate through AWS; any other registry through the Docker config file."""
    found = parse_registry_host(host)
    if found is not None:
        return EcrCredentials(*found)
    return DockerConfigCredentials(host)


def client_for(host: str, *, plain_http: bool = False) -> RegistryClient:
    """A registry client for ``host`` with the credentials ``credentials_for`` picks."""
    return RegistryClient(host, plain_http=plain_http, credentials=credentials_for(host))


def ecr_client(host: str, region: str | None = None) -> RegistryClient:
    """A client for an ECR registry, authenticated with the AWS credentials at hand."""
    found = parse_registry_host(host)
    if found is None:
        raise AuthError(f"{host} is not an Amazon ECR registry host")
    account, host_region = found
    return RegistryClient(host, credentials=EcrCredentials(account, region or host_region))
