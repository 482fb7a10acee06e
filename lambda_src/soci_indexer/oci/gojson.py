"""JSON exactly as Go's ``encoding/json`` writes it.

The snapshotter decodes a SOCI index and re-encodes it with Go before storing
it under the digest it was pulled by, so any other spelling of the same JSON
breaks the pull. Go writes compact JSON, struct fields in declaration order,
map keys sorted bytewise, ``<``, ``>``, ``&``, U+2028 and U+2029 as ``\\u``
escapes. A lone surrogate (Python keeps the ones
a ``\\ud800`` escape in JSON we read produced) becomes U+FFFD, which is what
Go's decoder turns it into before re-encoding.

Python values map to Go values like this: ``Struct`` is a Go struct (fields in
the order given, omitted fields simply left out by the caller), ``dict`` is a
Go map (keys sorted), ``list``/``tuple`` a slice, ``str``, ``int``, ``bool``
and ``None`` what they look like.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Union

GoValue = Union["Struct", Mapping[str, "GoValue"], Sequence["GoValue"], str, int, bool, None]

# Characters Go escapes with a short form; other controls become \u00XX.
_SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
_HTML_AND_SEPARATORS = {"<", ">", "&", "\u2028", "\u2029"}


@dataclass(frozen=True, slots=True)
class Struct:
    """A Go struct: fields written in the order given, nothing sorted."""

    fields: tuple[tuple[str, GoValue], ...]

    @classmethod
    def of(cls, *fields: tuple[str, GoValue]) -> Struct:
        return cls(tuple(fields))


def dumps(value: GoValue) -> bytes:
    """``value`` encoded as Go's ``json.Marshal`` would encode it."""
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts).encode("utf-8")


def _encode(value: GoValue, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, str):
        out.append(quote(value))
    elif isinstance(value, Struct):
        _encode_object(value.fields, out)
    elif isinstance(value, Mapping):
        _encode_object(sorted(value.items(), key=lambda item: _sort_key(item[0])), out)
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"gojson cannot encode {type(value).__name__}")


def _encode_object(items: Iterable[tuple[str, GoValue]], out: list[str]) -> None:
    out.append("{")
    for index, (key, item) in enumerate(items):
        if index:
            out.append(",")
        out.append(quote(key))
        out.append(":")
        _encode(item, out)
    out.append("}")


def _sort_key(key: str) -> bytes:
    """Go sorts map keys by their UTF-8 bytes (what ``quote`` will write)."""
    return _replace_surrogates(key).encode("utf-8")


def _replace_surrogates(text: str) -> str:
    """Lone surrogates become U+FFFD, as Go's decoder makes them."""
    return "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in text)


def quote(text: str) -> str:
    """A JSON string literal with Go's escaping."""
    pieces = ['"']
    for char in _replace_surrogates(text):
        short = _SHORT_ESCAPES.get(char)
        if short is not None:
            pieces.append(short)
        elif char < " " or char in _HTML_AND_SEPARATORS:
            pieces.append(f"\\u{ord(char):04x}")
        else:
            pieces.append(char)
    pieces.append('"')
    return "".join(pieces)
