"""The handler's environment: read once, defaults when unset, every bad value named."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from soci_indexer.aws.config import load_config
from soci_indexer.errors import ConfigurationError


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    config = load_config({})
    options = config.index_options
    assert (options.index_version, options.tag_suffix, options.platforms) == ("v2", "-soci", ())
    assert (options.min_layer_size, options.span_size) == (10 * 1024 * 1024, 4 * 1024 * 1024)
    assert (options.max_workers, options.deadline) == (4, None)
    assert (options.blob_connections, options.range_size) == (4, 8 * 1024 * 1024)
    assert (config.allow_cross_account, config.metrics_namespace, config.log_level) == (
        False,
        "SociIndexBuilder",
        "INFO",
    )


def test_every_variable_the_constructs_set_is_read() -> None:
    config = load_config(
        {
            "SOCI_INDEX_VERSION": "v1",
            "SOCI_TAG_SUFFIX": "-lazy",
            "SOCI_MIN_LAYER_SIZE_BYTES": "0",
            "SOCI_SPAN_SIZE_BYTES": "65536",
            "SOCI_PLATFORMS": "linux/amd64, linux/arm64/v8",
            "SOCI_BUILD_TOOL": "AWS SOCI CLI v0.2",
            "SOCI_MAX_LAYER_WORKERS": "2",
            "SOCI_BLOB_CONNECTIONS": "8",
            "SOCI_RANGE_SIZE_BYTES": "1048576",
            "SOCI_ALLOW_CROSS_ACCOUNT": "True",
            "POWERTOOLS_METRICS_NAMESPACE": "Team/Soci",
            "POWERTOOLS_SERVICE_NAME": "indexer",
            "LOG_LEVEL": "debug",
        }
    )
    options = config.index_options
    assert (options.index_version, options.tag_suffix, options.platforms) == (
        "v1",
        "-lazy",
        ("linux/amd64", "linux/arm64/v8"),
    )
    assert (options.min_layer_size, options.span_size, options.max_workers) == (0, 65536, 2)
    assert options.build_tool == "AWS SOCI CLI v0.2"
    assert (options.blob_connections, options.range_size) == (8, 1048576)
    assert (config.allow_cross_account, config.metrics_namespace, config.service_name) == (
        True,
        "Team/Soci",
        "indexer",
    )
    assert config.log_level == "DEBUG"


def test_a_blank_tag_suffix_falls_back_to_the_default_rather_than_overwriting_tags() -> None:
    assert load_config({"SOCI_TAG_SUFFIX": "  "}).index_options.tag_suffix == "-soci"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SOCI_INDEX_VERSION", "v3"),
        ("SOCI_TAG_SUFFIX", "/soci"),
        ("SOCI_MIN_LAYER_SIZE_BYTES", "-1"),
        ("SOCI_MIN_LAYER_SIZE_BYTES", "10MiB"),
        ("SOCI_SPAN_SIZE_BYTES", "0"),
        ("SOCI_PLATFORMS", "linux"),
        ("SOCI_MAX_LAYER_WORKERS", "0"),
        ("SOCI_MAX_LAYER_WORKERS", "33"),
        ("SOCI_BLOB_CONNECTIONS", "0"),
        ("SOCI_BLOB_CONNECTIONS", "17"),
        ("SOCI_RANGE_SIZE_BYTES", "65536"),
        ("SOCI_RANGE_SIZE_BYTES", "8MiB"),
        ("SOCI_ALLOW_CROSS_ACCOUNT", "yes please"),
        ("POWERTOOLS_METRICS_NAMESPACE", "AWS/Lambda"),
        ("LOG_LEVEL", "LOUD"),
    ],
)
def test_a_bad_value_is_refused_with_the_variable_and_the_value(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_config({name: value})
    assert name in str(caught.value)
    assert repr(value) in str(caught.value)


def test_all_bad_values_are_reported_at_once() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_config({"SOCI_SPAN_SIZE_BYTES": "big", "SOCI_INDEX_VERSION": "v9"})
    assert len(caught.value.problems) == 2


def test_a_bad_environment_fails_the_cold_start_with_a_json_log_line() -> None:
    env = {**os.environ, "SOCI_SPAN_SIZE_BYTES": "4MiB"}
    done = subprocess.run(
        [sys.executable, "-c", "import soci_indexer.aws.handler"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    logged = json.loads(done.stdout.splitlines()[0])
    assert logged["level"] == "ERROR"
    assert any("SOCI_SPAN_SIZE_BYTES" in problem for problem in logged["problems"])
    assert "ConfigurationError" in done.stderr


@pytest.mark.parametrize("level", ["TRACE", "WARN", "FATAL"])
def test_lambdas_own_log_level_names_are_accepted(level: str) -> None:
    assert load_config({"LOG_LEVEL": level}).log_level == level
