"""Go's encoding/json spelling, checked against strings written out by hand."""

from __future__ import annotations

import pytest
from soci_indexer.oci.gojson import Struct, dumps

SOCI_INDEX = (
    '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
    '"config":{"mediaType":"application/vnd.amazon.soci.index.v2+json",'
    '"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",'
    '"size":2},'
    '"layers":[{"mediaType":"application/octet-stream","digest":"sha256:'
    + "a" * 64
    + '","size":1234,"annotations":{"com.amazon.soci.image-layer-digest":"sha256:'
    + "b" * 64
    + '","com.amazon.soci.image-layer-mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",'
    '"com.amazon.soci.span-size":"4194304"}}],'
    '"annotations":{"com.amazon.soci.build-tool-identifier":"AWS SOCI CLI v0.2"}}'
)


def test_a_soci_index_manifest_is_written_like_the_reference_example() -> None:
    value = Struct.of(
        ("schemaVersion", 2),
        ("mediaType", "application/vnd.oci.image.manifest.v1+json"),
        (
            "config",
            Struct.of(
                ("mediaType", "application/vnd.amazon.soci.index.v2+json"),
                (
                    "digest",
                    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
                ),
                ("size", 2),
            ),
        ),
        (
            "layers",
            [
                Struct.of(
                    ("mediaType", "application/octet-stream"),
                    ("digest", "sha256:" + "a" * 64),
                    ("size", 1234),
                    (
                        "annotations",
                        {
                            "com.amazon.soci.span-size": "4194304",
                            "com.amazon.soci.image-layer-mediaType": (
                                "application/vnd.oci.image.layer.v1.tar+gzip"
                            ),
                            "com.amazon.soci.image-layer-digest": "sha256:" + "b" * 64,
                        },
                    ),
                )
            ],
        ),
        ("annotations", {"com.amazon.soci.build-tool-identifier": "AWS SOCI CLI v0.2"}),
    )
    assert dumps(value) == SOCI_INDEX.encode()


def test_struct_fields_keep_their_order() -> None:
    assert dumps(Struct.of(("z", 1), ("a", 2))) == b'{"z":1,"a":2}'


def test_map_keys_are_sorted_bytewise() -> None:
    assert (
        dumps({"b": 1, "a": 2, "B": 3, "é": 4, "a.b": 5})
        == '{"B":3,"a":2,"a.b":5,"b":1,"é":4}'.encode()
    )


def test_html_characters_are_escaped_like_go() -> None:
    assert dumps("<a href='x'>&</a>") == b"\"\\u003ca href='x'\\u003e\\u0026\\u003c/a\\u003e\""


def test_line_and_paragraph_separators_are_escaped() -> None:
    assert dumps("a\u2028b\u2029c") == b'"a\\u2028b\\u2029c"'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('say "hi"\\', b'"say \\"hi\\"\\\\"'),
        ("\n\r\t", b'"\\n\\r\\t"'),
        ("\b\f", b'"\\b\\f"'),
        ("\x00\x01\x1f", b'"\\u0000\\u0001\\u001f"'),
        ("\x7f", b'"\x7f"'),
        ("/", b'"/"'),
    ],
)
def test_control_characters_quotes_and_backslashes_are_escaped_like_go(
    text: str, expected: bytes
) -> None:
    assert dumps(text) == expected


def test_non_ascii_text_is_written_as_raw_utf8() -> None:
    assert dumps("café ☕ 😀") == '"café ☕ 😀"'.encode()


def test_a_lone_surrogate_becomes_the_replacement_character() -> None:
    assert dumps("a\ud800b") == '"a\ufffdb"'.encode()


def test_lists_nulls_booleans_and_empty_containers() -> None:
    assert dumps([None, True, False, 0, -5, [], {}, ""]) == b'[null,true,false,0,-5,[],{},""]'


def test_floats_are_refused_because_no_oci_field_holds_one() -> None:
    with pytest.raises(TypeError, match="float"):
        dumps(1.5)  # type: ignore[arg-type]
