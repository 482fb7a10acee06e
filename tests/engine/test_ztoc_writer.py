"""Entries laid out ahead (``prepare_entry``) give the bytes the general table writer gives.

The general writer (``_write_entry``, one ``table`` call an entry) is the one the
golden zTOCs check against the reference builder; entries without xattrs are
written in bulk from bytes prepared while the layer streams. Here both write
the same entries: every name and link length modulo 8, scalars zero and not,
devices, and entries with xattrs breaking the runs.
"""

from __future__ import annotations

import dataclasses
import random

import pytest
from soci_indexer.engine import ztoc as ztoc_module
from soci_indexer.engine.ztoc import FileMetadata, Ztoc, parse, prepare_entry, serialize

GOLDEN_LIKE = parse(
    serialize(
        Ztoc("AWS SOCI CLI v0.9.0", 1000, 2000, (), ztoc_module.CompressionInfo(
            ztoc_module.Compression.GZIP, 0, ("sha256:" + "0" * 64,), b"\x00" * 12)),
    )
)  # fmt: skip


def random_entry(rng: random.Random, offset: int) -> FileMetadata:
    kind = rng.choice(["reg", "dir", "symlink", "hardlink", "char", "fifo"])
    link = "t" * rng.randrange(1, 40) if kind in ("symlink", "hardlink") else ""
    device = kind == "char"
    return FileMetadata(
        name="n" * rng.randrange(0, 60),
        type=kind,
        uncompressed_offset=offset * rng.randrange(0, 2),
        uncompressed_size=rng.choice([0, 1, 511, 2**40]),
        linkname=link,
        mode=rng.choice([0, 0o644, 0o4755]),
        uid=rng.choice([0, 1000, 2**32 - 1]),
        gid=rng.choice([0, 100]),
        uname=rng.choice(["", "root", "a-much-longer-user-name"]),
        gname=rng.choice(["", "staff"]),
        mod_time=rng.choice(["2023-11-14T22:13:20Z", "0001-01-01T00:00:00Z", ""]),
        devmajor=rng.randrange(0, 3) if device else 0,
        devminor=rng.randrange(0, 3) if device else 0,
        xattrs=(("SCHILY.xattr.user.a", "v" * rng.randrange(5)),) if rng.random() < 0.05 else (),
    )


@pytest.mark.parametrize("seed", range(5))
def test_prepared_entries_give_the_general_writers_bytes(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    entries = tuple(random_entry(rng, 512 * (index + 1)) for index in range(3000))
    ztoc = dataclasses.replace(GOLDEN_LIKE, build_tool_identifier="x" * seed, metadata=entries)
    prepared = [prepare_entry(entry) for entry in entries]
    assert sum(entry is None for entry in prepared) > 50  # runs broken by entries with xattrs
    bulk = serialize(ztoc, prepared=prepared)
    monkeypatch.setattr(ztoc_module, "prepare_entry", lambda entry: None)
    assert bulk == serialize(ztoc)  # every entry through the general writer
    assert parse(bulk).metadata == entries
