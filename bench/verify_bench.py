"""Peak memory of ``soci-indexer verify`` against the size of the file it reads back.

An image with one layer holding one file of zeros (``tar cf - f | gzip -1``:
gigabytes of file in a blob of megabytes) is pushed to a docker-registry on
loopback and indexed; then ``soci-indexer verify`` runs in a process of its
own, which reports its peak resident set (VmHWM). verify reads the file twice,
lazily through its spans and in one full read, and compares streamed digests,
so the peak grows with the file only by the zTOC (one 32 KiB window per 4 MiB
span), held three times: its bytes, the parsed model, the decoded checkpoints.
The last column, peak less three zTOCs, stays flat.
Target: peak under 256 MiB at every size (a 9 GiB file once needed 24 GB).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "lambda_src")]

from soci_indexer.oci import manifests  # noqa: E402
from soci_indexer.pipeline import ImageStatus, IndexOptions, index_image  # noqa: E402
from support.images import MIB, PlatformImage, push_image, zeros_file_layer  # noqa: E402
from support.registry import LocalRegistry, installed, running_registry  # noqa: E402

TARGET_PEAK = 256 * MIB
REPOSITORY = "bench/verify"
PEAK_OF_VERIFY = """
import re, sys
from soci_indexer.cli.main import main
status = main(sys.argv[1:])
status_text = open("/proc/self/status").read()
print("peak", re.search(r"^VmHWM:\\s+(\\d+) kB", status_text, re.M).group(1), file=sys.stderr)
sys.exit(status)
"""


def measure(registry: LocalRegistry, file_mib: int) -> tuple[int, float, int, int]:
    """(peak RSS, seconds, layer blob bytes, zTOC bytes) of verifying a ``file_mib`` MiB file."""
    client = registry.client()
    layer = zeros_file_layer(file_mib)
    tag = f"zeros-{file_mib}"
    push_image(client, REPOSITORY, tag, [PlatformImage("linux", "amd64", (layer,))])
    result = index_image(client, REPOSITORY, tag, IndexOptions(min_layer_size=0))
    assert result.status is ImageStatus.INDEXED, result.reason
    soci = manifests.parse_manifest(client.get_manifest(REPOSITORY, result.soci_indexes[0]).data)
    assert isinstance(soci, manifests.ImageManifest)
    ztoc_size = soci.layers[0].size
    image = f"{registry.host}/{REPOSITORY}:{tag}-soci"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PEAK_OF_VERIFY, "verify", image, "--plain-http"],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    peak = re.search(r"^peak (\d+)$", done.stderr, re.MULTILINE)
    if done.returncode != 0 or peak is None:
        raise RuntimeError(f"verify failed: {done.stdout}{done.stderr}")
    return int(peak[1]) * 1024, seconds, layer.size, ztoc_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="0.25,2", help="GiB of file, comma separated (default 0.25,2)"
    )
    args = parser.parse_args(argv)
    if not installed():
        print("verify benchmark: docker-registry is not installed; skipped")
        return 1
    sizes = [int(float(text) * 1024) for text in args.sizes.split(",")]
    print("\n== peak RSS of verify against the size of the file it reads back ==")
    columns = ("layer blob", 11), ("zTOC", 8), ("peak RSS", 9), ("seconds", 8)
    print(f"{'file':>9}", *(f"{name:>{width}}" for name, width in columns), "  RSS - 3 zTOC")
    worst = 0
    with running_registry() as registry:
        for file_mib in sizes:
            peak, seconds, blob, ztoc = measure(registry, file_mib)
            worst = max(worst, peak)
            print(
                f"{file_mib / 1024:>7.2f} G {blob / MIB:>9.1f} M {ztoc / MIB:>6.1f} M"
                f" {peak / MIB:>7.1f} M {seconds:>8.1f} {(peak - 3 * ztoc) / MIB:>11.1f} M"
            )
    met = worst < TARGET_PEAK
    verdict = "ok" if met else "ABOVE TARGET"
    print(f"  worst peak {worst / MIB:.1f} MiB (target < {TARGET_PEAK // MIB} MiB: {verdict})")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
