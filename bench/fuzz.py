"""`make fuzz`: coverage-guided fuzzing of the tar reader, the checkpointer and the zTOC reader.

libFuzzer (through atheris) mutates real layers and zTOCs; the first byte of
each input picks the target. Every input must end in a zTOC or a typed error
within the time (-timeout) and memory (-rss_limit_mb) bounds; anything else
stops the run and leaves the input as crash-* in the working directory, to be
turned into a regression case under tests/reliability/regressions/.

    make fuzz                                  # 100,000 inputs over every core
    .venv/bin/python bench/fuzz.py --runs 1000000
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from pathlib import Path

import atheris

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "reliability"))

if "--worker" in sys.argv:
    # Only the fuzzing processes pay for coverage instrumentation.
    with atheris.instrument_imports(include=["soci_indexer"]):
        import soci_indexer.engine.build
        import soci_indexer.engine.inflate
        import soci_indexer.engine.readback
        import soci_indexer.engine.tar
        import soci_indexer.engine.ztoc  # noqa: F401

import mutations  # noqa: E402

TARGET_NAMES = sorted(mutations.TARGETS)


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
    if not data:
        return
    target = mutations.TARGETS[TARGET_NAMES[data[0] % len(TARGET_NAMES)]]
    target(data[1:])


def worker(libfuzzer_args: list[str]) -> None:
    """One libFuzzer process (runs until -runs is reached or an input fails)."""
    atheris.Setup([sys.argv[0], *libfuzzer_args], test_one_input)
    atheris.Fuzz()


def main() -> int:
    parser = argparse.ArgumentParser(description="Fuzz the parsers (libFuzzer via atheris).")
    parser.add_argument("--runs", type=int, default=100_000, help="inputs in all (default 100000)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel processes")
    parser.add_argument("--worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker)
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="soci-fuzz-"))
    corpus = workdir / "corpus"
    corpus.mkdir()
    for number, seed in enumerate(seeds()):
        (corpus / f"seed-{number:03d}").write_bytes(seed)
    started = time.monotonic()
    jobs = []
    for job in range(args.jobs):
        runs = args.runs // args.jobs + (1 if job < args.runs % args.jobs else 0)
        log = (workdir / f"job-{job}.log").open("w")
        libfuzzer = [
            f"-runs={runs}",
            f"-seed={job + 1}",
            "-timeout=20",
            "-rss_limit_mb=2048",
            "-max_len=131072",
            f"-artifact_prefix={workdir}/",
            str(corpus),
        ]
        command = [sys.executable, __file__, "--worker", *libfuzzer]
        jobs.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log, job))
    total, failed = 0, []
    for process, log, job in jobs:
        status = process.wait()
        log.close()
        text = (workdir / f"job-{job}.log").read_text(errors="replace")
        done = re.search(r"Done (\d+) runs", text)
        total += int(done.group(1)) if done else 0
        if status != 0:
            failed.append(job)
    seconds = time.monotonic() - started
    print(
        f"fuzz: {total} inputs in {seconds:.0f} s over {args.jobs} processes "
        f"(targets: {', '.join(TARGET_NAMES)})"
    )
    if failed:
        crashes = sorted(workdir.glob("crash-*")) + sorted(workdir.glob("timeout-*"))
        crashes += sorted(workdir.glob("oom-*"))
        print(f"fuzz: FAILED in processes {failed}; inputs kept: {[str(c) for c in crashes]}")
        print(f"fuzz: logs in {workdir}")
        return 1
    print("fuzz: every input ended in a zTOC or a typed error, within the time and memory bounds")
    shutil.rmtree(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
