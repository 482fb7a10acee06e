"""One engine_bench measurement, in a fresh process that imports only what it measures.

    python bench/engine_child.py LAYER inflate|build CORES

The parent times this whole process, start-up included, so the baseline and
the build pay the same interpreter start; the build also pays the import of
the engine, as a real run would. Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from pathlib import Path

MIB = 1024 * 1024


def _peak_rss_kib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1])
    return float("nan")


def main(path: str, task: str, cores: int) -> dict[str, float]:
    if cores:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cores])
    result: dict[str, float] = {}
    if task == "inflate":
        inflater = zlib.decompressobj(47)
        produced = 0
        with open(path, "rb") as layer:
            while chunk := layer.read(MIB):
                produced += len(inflater.decompress(chunk))
        result["uncompressed"] = produced
    else:
        from soci_indexer.engine.build import build_ztoc

        with open(path, "rb") as layer:
            build = build_ztoc(layer)
        result["entries"] = len(build.ztoc.metadata)
        result["spans"] = build.ztoc.compression.max_span_id + 1
        result["uncompressed"] = build.ztoc.uncompressed_archive_size
        result["ztoc"] = len(build.data)
    result["peak_kib"] = _peak_rss_kib()
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
