"""ECR registry hosts, both ways, and logging in to them through AWS."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from soci_indexer.aws.ecr import (
    EcrCredentials,
    credentials_for,
    ecr_client,
    parse_registry_host,
    registry_host,
)
from soci_indexer.errors import AuthError, InvalidEvent
from soci_indexer.oci.auth import DockerConfigCredentials


@pytest.mark.parametrize(
    ("account", "region", "host"),
    [
        ("123456789012", "us-west-2", "123456789012.dkr.ecr.us-west-2.amazonaws.com"),
        ("000000000001", "eu-central-1", "000000000001.dkr.ecr.eu-central-1.amazonaws.com"),
        ("123456789012", "us-gov-west-1", "123456789012.dkr.ecr.us-gov-west-1.amazonaws.com"),
        ("123456789012", "cn-north-1", "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"),
        ("123456789012", "cn-northwest-1", "123456789012.dkr.ecr.cn-northwest-1.amazonaws.com.cn"),
    ],
)
def test_the_registry_host_is_the_ecr_endpoint_of_account_and_region(
    account: str, region: str, host: str
) -> None:
    assert registry_host(account, region) == host


@pytest.mark.parametrize(
    "account",
    ["12345678901", "1234567890123", "12345678901a", "١٢٣٤٥٦٧٨٩٠١٢", "123456789012\n", ""],
)
def test_accounts_that_are_not_twelve_ascii_digits_are_refused(account: str) -> None:
    with pytest.raises(InvalidEvent, match="account"):
        registry_host(account, "us-west-2")


@pytest.mark.parametrize(
    "region",
    [
        "us-west-2.evil.example",
        "evil.example/us-west-2",
        "US-WEST-2",
        "us-west",
        "us-west-2 ",
        "us-west-2\n",
        "us-iso-east-1",
        "",
    ],
)
def test_regions_that_are_not_aws_region_names_are_refused(region: str) -> None:
    with pytest.raises(InvalidEvent, match="region"):
        registry_host("123456789012", region)


@given(
    account=st.one_of(st.text(max_size=20), st.from_regex(r"[0-9]{12}", fullmatch=True)),
    region=st.one_of(
        st.text(max_size=30),
        st.from_regex(r"(cn|us|eu)(-gov)?-[a-z]{2,9}-[0-9]{1,2}", fullmatch=True),
    ),
)
def test_no_account_or_region_text_yields_a_host_outside_ecr(account: str, region: str) -> None:
    try:
        host = registry_host(account, region)
    except InvalidEvent:
        return
    assert host == f"{account}.dkr.ecr.{region}.amazonaws.com" or (
        region.startswith("cn-") and host == f"{account}.dkr.ecr.{region}.amazonaws.com.cn"
    )
    assert set(host) <= set("abcdefghijklmnopqrstuvwxyz0123456789.-")


def test_ecr_hosts_log_in_with_an_ecr_authorization_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moto import mock_aws

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        credentials = credentials_for("123456789012.dkr.ecr.eu-west-1.amazonaws.com")
        login = credentials.credentials()
    assert login is not None
    assert login.username == "AWS"
    assert login.password


def test_a_host_that_is_not_ecr_cannot_get_an_ecr_client() -> None:
    with pytest.raises(AuthError, match="not an Amazon ECR registry"):
        ecr_client("registry.example:5000")


@pytest.mark.parametrize(
    ("host", "found"),
    [
        ("123456789012.dkr.ecr.us-west-2.amazonaws.com", ("123456789012", "us-west-2")),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", ("123456789012", "cn-north-1")),
        ("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com", ("123456789012", "us-east-1")),
        ("registry.example:5000", None),
        ("123456789012.dkr.ecr.us-west-2.amazonaws.com.evil.example", None),
        ("123456789012.dkr.ecr.evil.example/x.amazonaws.com", None),
    ],
)
def test_a_registry_host_reads_back_as_its_account_and_region(
    host: str, found: tuple[str, str] | None
) -> None:
    assert parse_registry_host(host) == found


@given(
    account=st.from_regex(r"[0-9]{12}", fullmatch=True),
    region=st.from_regex(r"(cn|us|eu|ap)(-gov)?-[a-z]{2,9}-[0-9]{1,2}", fullmatch=True),
)
def test_every_host_built_reads_back_as_the_same_account_and_region(
    account: str, region: str
) -> None:
    assert parse_registry_host(registry_host(account, region)) == (account, region)


def test_ecr_hosts_log_in_through_aws_and_other_registries_through_docker_config() -> None:
    assert isinstance(
        credentials_for("123456789012.dkr.ecr.eu-west-1.amazonaws.com"), EcrCredentials
    )
    assert isinstance(credentials_for("registry.example:5000"), DockerConfigCredentials)


def test_without_boto3_an_ecr_login_says_which_package_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # what `import boto3` meets when absent
    source = EcrCredentials("123456789012", "eu-west-1")
    with pytest.raises(AuthError, match=r"boto3 is needed .*: pip install boto3$"):
        source.credentials()


@pytest.mark.parametrize(
    "reply",
    [
        {},
        {"authorizationData": []},
        {"authorizationData": [{"proxyEndpoint": "https://x"}]},
        {"authorizationData": [{"authorizationToken": "not base64!", "expiresAt": 0}]},
    ],
    ids=["no-data", "empty-data", "no-token", "token-not-base64"],
)
def test_an_ecr_reply_without_a_usable_token_is_an_auth_error(
    monkeypatch: pytest.MonkeyPatch, reply: dict[str, object]
) -> None:
    import boto3
    from botocore.stub import Stubber

    ecr = boto3.client(
        "ecr", region_name="eu-west-1", aws_access_key_id="t", aws_secret_access_key="t"
    )
    monkeypatch.setattr(boto3, "client", lambda *args, **kwargs: ecr)
    with Stubber(ecr) as stub:
        stub.add_response("get_authorization_token", reply, {"registryIds": ["123456789012"]})
        with pytest.raises(AuthError, match="ECR sent no usable authorization token"):
            EcrCredentials("123456789012", "eu-west-1").credentials()
