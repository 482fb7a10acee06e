"""Synth-time checks of construct props.

Each check raises ``InvalidPropError`` (where, what, received, expected) and
lets unresolved Tokens through: their value is only known at deploy time.
``where`` is the construct, or its path when the check must run before the
construct exists (a subclass of an aws-cdk-lib construct checks its props
before calling the parent's constructor).

Python does not check argument types, and a bare string is a sequence of
strings: ``repository_name_filters="team-a/*"`` would be read as nine
one-character filters, one of them ``*``. So every prop gets a type check
before its value is used.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from aws_cdk import Duration, Token
from aws_cdk import aws_ecr as ecr
from constructs import Construct
from soci_indexer import settings

from soci_cdk.errors import InvalidPropError
from soci_cdk.interfaces import ISociRepository

Where = Construct | str


def _path(where: Where) -> str:
    return where if isinstance(where, str) else where.node.path


def is_token(value: object) -> bool:
    """An unresolved Token: a string, number or string list known only at deploy.

    Only values jsii can pass are asked about; anything else is no Token.
    """
    if isinstance(value, bool):
        return False
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return Token.is_unresolved(value)
    return isinstance(value, str | int | float) and Token.is_unresolved(value)


def is_a(value: object, kind: type[Any]) -> bool:
    """``isinstance`` that also understands jsii interfaces (``ecr.IRepository``...).

    jsii interfaces are typing Protocols that ``isinstance`` refuses. An object
    implements one when it is jsii's proxy for it (an imported resource), or
    when a class of its MRO declares it (``__jsii_ifaces__``), directly or
    through an interface that extends it.
    """
    if not getattr(kind, "_is_protocol", False):
        return isinstance(value, kind)
    if isinstance(value, type):
        return False
    # An object jsii hands back as several interfaces at once delegates to one proxy each.
    delegates = vars(value).get("_delegates") if hasattr(value, "__dict__") else None
    if isinstance(delegates, list):
        return any(is_a(delegate, kind) for delegate in delegates)
    # jsii's proxy for an interface extends the proxies of the interfaces it extends.
    proxy = getattr(kind, "__jsii_proxy_class__", None)
    if proxy is not None and isinstance(value, proxy()):
        return True
    return any(
        kind in interface.__mro__
        for cls in type(value).__mro__
        for interface in getattr(cls, "__jsii_ifaces__", ())
    )


def check_instance(
    where: Where, prop: str, value: object, kind: type[Any], *, optional: bool = False
) -> None:
    """``value`` is a ``kind`` (a class, an enum or a jsii interface); None if ``optional``."""
    if value is None and optional:
        return
    if not is_a(value, kind):
        raise InvalidPropError(_path(where), prop, value, _type_name(kind))


def check_instance_list(
    where: Where, prop: str, value: object, kind: type[Any], *, optional: bool = False
) -> None:
    """``value`` is a list (or tuple) of ``kind``; None if ``optional``."""
    if value is None and optional:
        return
    expected = f"a list of {_type_name(kind)}"
    if not isinstance(value, list | tuple):
        raise InvalidPropError(_path(where), prop, value, expected)
    for item in value:
        if not is_a(item, kind):
            raise InvalidPropError(_path(where), prop, value, f"{expected}; {item!r} is not one")


def check_str(where: Where, prop: str, value: object, *, optional: bool = False) -> None:
    """``value`` is a string; None if ``optional``."""
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise InvalidPropError(_path(where), prop, value, "a string")


def check_str_list(where: Where, prop: str, value: object, *, optional: bool = False) -> None:
    """``value`` is a list (or tuple) of strings, not a bare string; None if ``optional``.

    A list Token (``CfnParameter(...).value_as_list``) is let through.
    """
    if value is None and optional:
        return
    if is_token(value):
        return
    is_list = isinstance(value, list | tuple) and all(isinstance(item, str) for item in value)
    if not is_list:
        hint = f" such as [{value!r}]" if isinstance(value, str) else ""
        raise InvalidPropError(_path(where), prop, value, f"a list of strings{hint}")


def check_bool(where: Where, prop: str, value: object, *, optional: bool = False) -> None:
    """``value`` is True or False; None if ``optional``."""
    if value is None and optional:
        return
    if not isinstance(value, bool):
        raise InvalidPropError(_path(where), prop, value, "True or False")


def check_duration(where: Where, prop: str, value: object, *, optional: bool = False) -> None:
    """``value`` is an ``aws_cdk.Duration``; None if ``optional``."""
    check_instance(where, prop, value, Duration, optional=optional)


def check_whole_number(
    where: Where, prop: str, value: object, minimum: int, maximum: int | None = None
) -> None:
    """``value`` is an int in ``[minimum, maximum]`` (no upper bound when ``maximum`` is None)."""
    if is_token(value):
        return
    in_range = (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value >= minimum
        and (maximum is None or value <= maximum)
    )
    if not in_range:
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"{minimum} or more"
        raise InvalidPropError(_path(where), prop, value, f"a whole number {bounds}")


def check_choice(where: Where, prop: str, value: object, choices: Collection[str]) -> None:
    """``value`` is one of ``choices``."""
    if is_token(value):
        return
    if not isinstance(value, str) or value not in choices:
        expected = "one of " + ", ".join(repr(choice) for choice in sorted(choices))
        raise InvalidPropError(_path(where), prop, value, expected)


def check_pattern(
    where: Where,
    prop: str,
    value: object,
    pattern: re.Pattern[str],
    expected: str,
    *,
    optional: bool = False,
) -> None:
    """``value`` is a string that matches ``pattern`` in full; None if ``optional``."""
    if value is None and optional:
        return
    if is_token(value):
        return
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidPropError(_path(where), prop, value, expected)


def _type_name(kind: type[Any]) -> str:
    """``aws_ecr.IRepository`` for a jsii type, the class name otherwise."""
    module = kind.__module__
    if module.startswith("aws_cdk."):
        return f"{module.removeprefix('aws_cdk.')}.{kind.__name__}"
    if module == "aws_cdk":
        return f"aws_cdk.{kind.__name__}"
    return kind.__name__


def check_tag_suffix(where: Where, value: object) -> None:
    """``value`` is None or an output tag suffix (``-soci``)."""
    check_pattern(
        where,
        "tag_suffix",
        value,
        settings.TAG_SUFFIX,
        settings.TAG_SUFFIX_EXPECTED,
        optional=True,
    )


def output_tag_suffix(where: Where, tag_suffix: str | None, repository: ecr.IRepository) -> str:
    """The suffix of the tags written to ``repository``: a ``SociRepository``'s own (the only
    tags it keeps mutable, the ones its builder writes), else ``tag_suffix`` or ``-soci``.
    Another suffix than a ``SociRepository``'s is refused."""
    if not isinstance(repository, ISociRepository):
        return settings.DEFAULT_TAG_SUFFIX if tag_suffix is None else tag_suffix
    if tag_suffix is not None and tag_suffix != repository.tag_suffix:
        raise InvalidPropError(
            _path(where),
            "tag_suffix",
            tag_suffix,
            f"the repository's suffix {repository.tag_suffix!r} or unset",
        )
    return repository.tag_suffix
