"""`make fuzz`: coverage-guided fuzzing of the tar reader, the checkpointer and the zTOC reader.

libFuzzer (through atheris) mutates real layers and zTOCs; the first byte of
each input picks the target. Every input must end in a zTOC or a typed error
within the time (-timeout) and memory (-rss_limit_mb) bounds; anything else
stops the run and leaves the input as crash-* in the working directory, to be
turned into a regression case under tests/reliability/regressions/.

    make fuzz                      # 100,000 runs
    .venv/bin/python bench/fuzz.py -runs=1000000
"""

from __future__ import annotations

import atexit
import io
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path

import atheris

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "reliability"))

with atheris.instrument_imports():
    import soci_indexer.extract
    import soci_indexer.inflate
    import soci_indexer.layer
    import soci_indexer.tar
    import soci_indexer.ztoc  # noqa: F401

import mutations  # noqa: E402

TARGET_NAMES = sorted(mutations.TARGETS)
RUNS = 0


def small_tar() -> bytes:
    """A small tar with every entry kind the reader handles, to mutate cheaply."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in _entries():
            tar.addfile(info, io.BytesIO(data) if data else None)
    return out.getvalue()


def _entries() -> list[tuple[tarfile.TarInfo, bytes]]:
    def info(name: str, kind: bytes, size: int = 0, **extra: object) -> tarfile.TarInfo:
        item = tarfile.TarInfo(name)
        item.type, item.size, item.mtime = kind, size, 1_700_000_000
        for key, value in extra.items():
            setattr(item, key, value)
        return item

    text = b"hello lazy world\n" * 40
    return [
        (info("etc/", tarfile.DIRTYPE, mode=0o755), b""),
        (info("etc/hosts", tarfile.REGTYPE, len(text), mode=0o644), text),
        (info("usr/" + "x" * 120 + "/long", tarfile.REGTYPE, 5), b"12345"),
        (info("link", tarfile.SYMTYPE, linkname="etc/hosts"), b""),
        (info("hard", tarfile.LNKTYPE, linkname="etc/hosts"), b""),
        (info("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3), b""),
        (info("xattr", tarfile.REGTYPE, 3, pax_headers={"SCHILY.xattr.user.k": "v"}), b"abc"),
        (info("frac", tarfile.REGTYPE, 0, pax_headers={"mtime": "1700000000.25"}), b""),
    ]


def seeds() -> list[bytes]:
    tar = small_tar()
    corpus = [TARGET_NAMES.index("tar-layer").to_bytes(1, "big") + tar]
    corpus.append(TARGET_NAMES.index("tar-in-gzip").to_bytes(1, "big") + tar)
    gzip_index = TARGET_NAMES.index("gzip-layer").to_bytes(1, "big")
    corpus += [gzip_index + layer for layer in mutations.deflate_raw_variants(tar)]
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    corpus.append(gzip_index + compressor.compress(tar) + compressor.flush())
    for name in TARGET_NAMES:
        selector = TARGET_NAMES.index(name).to_bytes(1, "big")
        corpus += [selector + seed for seed in mutations.seeds_for(name)]
    return corpus


def test_one_input(data: bytes) -> None:
    global RUNS
    RUNS += 1
    if not data:
        return
    target = mutations.TARGETS[TARGET_NAMES[data[0] % len(TARGET_NAMES)]]
    target(data[1:])


def _report() -> None:
    print(f"fuzz: {RUNS} inputs run, every one ended in a result or a typed error", flush=True)


def main() -> None:
    args = list(sys.argv)
    if not any(arg.startswith("-runs=") for arg in args):
        args.append("-runs=100000")
    args += ["-timeout=20", "-rss_limit_mb=2048", "-max_len=131072"]
    corpus = Path(tempfile.mkdtemp(prefix="soci-fuzz-corpus-"))
    for number, seed in enumerate(seeds()):
        (corpus / f"seed-{number:03d}").write_bytes(seed)
    args.append(str(corpus))
    atexit.register(_report)
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
