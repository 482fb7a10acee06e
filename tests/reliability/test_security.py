"""Bearer tokens never reach a log line or an error message, even when they expire mid-run."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace

import pytest
from faultproxy import Fault, FaultProxy
from soci_indexer.aws import handler
from soci_indexer.aws.handler import process_event
from soci_indexer.oci.client import RegistryClient, RetryPolicy
from support.images import PlatformImage, gzip_tar_layer, push_image
from support.lambda_shapes import FakeContext, load_event, sqs_batch
from support.registry import LocalRegistry

pytestmark = pytest.mark.registry


@pytest.fixture
def debug_logs() -> Iterator[None]:
    """Log everything a run can log, to give a leak every chance to show."""
    handler.LOGGER.set_level("DEBUG")
    yield
    handler.LOGGER.set_level(handler.CONFIG.log_level)


@pytest.mark.usefixtures("debug_logs")
def test_bearer_tokens_stay_out_of_logs_when_they_expire_mid_run(
    registry: LocalRegistry, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    image = PlatformImage("linux", "amd64", (gzip_tar_layer(1.5, seed=77),))
    pushed = push_image(registry.client(), "security/tokens", "v1", [image])
    event = load_event("push-tagged")
    event["detail"].update(
        {"repository-name": pushed.repository, "image-digest": pushed.digest, "image-tag": "v1"}
    )
    options = replace(handler.CONFIG.index_options, min_layer_size=0, span_size=65536)
    config = replace(handler.CONFIG, index_options=options)
    caplog.set_level(logging.DEBUG)

    with FaultProxy(registry.host, token_auth=True) as proxy:
        proxy.inject(Fault("expire-token", match="any", skip=6), Fault("server-error", match="any"))
        client = RegistryClient(
            proxy.address,
            plain_http=True,
            retry=RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05),
        )
        result = process_event(
            sqs_batch(json.dumps(event)),
            FakeContext(),
            client_factory=lambda account, region: client,
            config=config,
        )
        tokens = proxy.issued_tokens

    captured = capsys.readouterr()
    everything = captured.out + captured.err + caplog.text
    assert result == {"batchItemFailures": []}
    assert len(tokens) >= 2, "the token never expired: the test shows nothing"
    assert "image indexed" in everything
    for token in tokens:
        assert token not in everything
