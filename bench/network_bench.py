"""Network benchmark: indexing when each connection is capped, as one stream from ECR/S3 is.

In Lambda the indexer is bound by the speed of one registry stream (tens of
MB/s), not by loopback. Here the project's loopback proxy
(``tests/support/proxy.py``, in a process of its own) sits in front of a
docker-registry and caps every connection at ``--rate-mib`` MiB/s. Two
images are pushed: one layer (the engine benchmark's large layer) and
several layers. For each, in fresh child processes, best of ``--rounds``:

- baseline: a full pull through the capped proxy, one connection per layer
  (layers at once, as many as the pipeline indexes at once), every byte
  read and dropped;
- baseline: one zlib inflate pass over the image's layers, one after another,
  from local files (no network, no parsing: the floor of any indexer);
- for context: ``build_ztoc`` on the same local files (layers at once, as
  the pipeline does), the engine's share of the time without any fetching;
- indexing: ``index_image`` through the capped proxy with 1, 2, 4 and 8
  connections per layer (the one-layer image; the default only for the
  other), and straight to the registry with no cap (the default, and for
  several layers also one connection each);
- peak RSS (VmHWM) of each indexing child;
- CPU time (user + system) of the uncapped indexing child and of the
  registry serving it (from ``/proc/<pid>/stat``): on a machine with few
  cores their sum, divided by the cores, is a floor under the index time
  that no overlap can beat.

Printed as ratios to the two baselines measured in the same run. Targets:
capped, default connections, one layer: index <= 0.5x the pull (moonshot:
<= 1.15x the zlib pass, the network fully hidden); uncapped: index <= 1.25x
the zlib pass.

    make bench                                    # through bench/run.py
    .venv/bin/python bench/network_bench.py --rate-mib 40 --rounds 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "lambda_src"), str(ROOT / "bench")]

import engine_bench  # noqa: E402
import pipeline_bench  # noqa: E402
from soci_indexer import settings  # noqa: E402
from soci_indexer.engine.build import build_ztoc  # noqa: E402
from soci_indexer.oci.auth import StaticCredentials  # noqa: E402
from soci_indexer.oci.client import RegistryClient  # noqa: E402
from soci_indexer.pipeline import ImageStatus, IndexOptions, index_image  # noqa: E402
from support.images import GZIP_OCI, Blob, PlatformImage, push_image  # noqa: E402
from support.proxy import proxy  # noqa: E402
from support.registry import LocalRegistry, installed, running_registry  # noqa: E402

MIB = 1024 * 1024
WORKERS = settings.DEFAULT_MAX_LAYER_WORKERS  # layers at once, for the pull as for indexing
SWEEP = (1, 2, 4, 8)
TARGET_PULL = 0.5
MOONSHOT_ZLIB = 1.15
TARGET_UNCAPPED_ZLIB = 1.25


@dataclass(frozen=True)
class Image:
    name: str
    files: tuple[Path, ...]  # its gzip layers, in order

    @property
    def size(self) -> int:
        return sum(path.stat().st_size for path in self.files)


# --------------------------------------------------------------------------- images


def _multi_layer_files(layers: int, mib: int) -> tuple[Path, ...]:
    """``layers`` gzip layers of ~``mib`` MiB of tar each (the pipeline benchmark's kind)."""
    paths = []
    for seed in range(layers):
        path = engine_bench.BENCH_DIR / f"network-{mib}mib-{seed}.tar.gz"
        if not path.exists():
            engine_bench.BENCH_DIR.mkdir(exist_ok=True)
            path.with_suffix(".partial").write_bytes(pipeline_bench.make_layer(mib, seed).data)
            path.with_suffix(".partial").rename(path)
        paths.append(path)
    return tuple(paths)


def _diff_id(data: bytes) -> str:
    inflater = zlib.decompressobj(47)
    digest = hashlib.sha256()
    for start in range(0, len(data), 4 * MIB):
        digest.update(inflater.decompress(data[start : start + 4 * MIB]))
    return "sha256:" + digest.hexdigest()


def _push(client: RegistryClient, image: Image) -> None:
    blobs = []
    for path in image.files:
        data = path.read_bytes()
        blobs.append(Blob(data, GZIP_OCI, _diff_id(data)))
    push_image(client, f"bench/{image.name}", "v1", [PlatformImage("linux", "amd64", tuple(blobs))])


# --------------------------------------------------------------------------- the capped proxy


def _proxy_child(upstream: str, rate: float) -> None:
    with proxy(upstream, lambda *_: None, rate=rate) as front:
        print(front.host, flush=True)
        sys.stdin.read()  # until the parent closes it


@contextmanager
def capped_proxy(upstream: str, rate: float) -> Iterator[str]:
    """The proxy in its own process (its relaying must not take the indexer's GIL)."""
    command = [sys.executable, __file__, "--proxy", upstream, str(rate)]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        yield child.stdout.readline().strip()
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)


# --------------------------------------------------------------------------- children


def _client(host: str) -> RegistryClient:
    return RegistryClient(host, plain_http=True, credentials=StaticCredentials(None))


def _layer_digests(client: RegistryClient, repository: str) -> list[str]:
    manifest = json.loads(client.get_manifest(repository, "v1").data)
    return [layer["digest"] for layer in manifest["layers"]]


def _child(task: str, target: str, connections: int, label: str) -> dict[str, float]:
    started = time.perf_counter()
    cpu_started = time.process_time()
    if task == "inflate":
        for path in target.split(os.pathsep):
            inflater = zlib.decompressobj(47)
            with open(path, "rb") as layer:
                while chunk := layer.read(MIB):
                    inflater.decompress(chunk)
    elif task == "build":

        def build(path: str) -> None:
            with open(path, "rb") as layer:
                build_ztoc(layer)

        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(build, target.split(os.pathsep)))
    else:
        host, repository = target.split("/", 1)
        with _client(host) as client:
            if task == "pull":
                digests = _layer_digests(client, repository)
                started = time.perf_counter()
                cpu_started = time.process_time()

                def fetch(digest: str) -> int:
                    return sum(map(len, client.stream_blob(repository, digest)))

                with ThreadPoolExecutor(WORKERS) as pool:
                    list(pool.map(fetch, digests))
            else:
                # a new build tool per run: new zTOC digests, so every run does all the work
                options = IndexOptions(
                    max_workers=WORKERS, blob_connections=connections, build_tool=label
                )
                result = index_image(client, repository, "v1", options)
                assert result.status is ImageStatus.INDEXED, result.reason
    return {
        "seconds": time.perf_counter() - started,
        "cpu": time.process_time() - cpu_started,
        "peak_kib": engine_bench._peak_rss_kib(),
    }


Case = tuple[str, str, int]  # task, target, connections


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def registry_pid(registry: LocalRegistry) -> int:
    """The docker-registry process serving ``registry`` (found by its config file)."""
    config = str(registry.root.parent / "config.yml").encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if config in (entry / "cmdline").read_bytes().split(b"\0"):
                    return int(entry.name)
            except OSError:  # a process that ended meanwhile
                continue
    raise RuntimeError(f"no process serves the registry at {registry.host}")


def _once(case: Case, server: int) -> dict[str, float]:
    """One fresh child; ``server_cpu`` is what process ``server`` used meanwhile."""
    task, target, connections = case
    label = f"network-bench {task} {target} {connections} {time.time()}"
    command = [sys.executable, __file__, "--child", task, target, str(connections), label]
    before = process_cpu_seconds(server)
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(output)
    return {**result, "server_cpu": process_cpu_seconds(server) - before}


def _measure(cases: list[Case], rounds: int, server: int) -> dict[Case, dict[str, float]]:
    """Best of ``rounds`` for each case, the cases taking turns within each round so that
    a busy spell on a shared machine lands on all of them rather than on one. The CPU
    times are those of the fastest run."""
    runs: dict[Case, list[dict[str, float]]] = {case: [] for case in cases}
    for _ in range(rounds):
        for case in cases:
            runs[case].append(_once(case, server))
    best = {}
    for case, done in runs.items():
        fastest = min(done, key=lambda run: run["seconds"])
        best[case] = {**fastest, "peak_kib": max(run["peak_kib"] for run in done)}
    return best


# --------------------------------------------------------------------------- report


def _verdict(value: float, limit: float) -> str:
    return "ok" if value <= limit else "MISSED"


def _report(
    image: Image, registry: LocalRegistry, capped: str, rounds: int, sweep: tuple[int, ...]
) -> bool:
    repository = f"bench/{image.name}"
    default = settings.DEFAULT_BLOB_CONNECTIONS
    pull_case: Case = ("pull", f"{capped}/{repository}", 1)
    inflate_case: Case = ("inflate", os.pathsep.join(map(str, image.files)), 0)
    build_case: Case = ("build", inflate_case[1], 0)
    capped_cases: list[Case] = [("index", f"{capped}/{repository}", n) for n in sweep]
    uncapped_case: Case = ("index", f"{registry.host}/{repository}", default)
    # several layers: also one connection each, to see whether fewer connections help
    one_each: Case = ("index", f"{registry.host}/{repository}", 1)
    extra = [one_each] if len(image.files) > 1 else []
    cases = [pull_case, inflate_case, build_case, *capped_cases, *extra, uncapped_case]
    best = _measure(cases, rounds, registry_pid(registry))
    pull, inflate = best[pull_case]["seconds"], best[inflate_case]["seconds"]
    print(
        f"{image.name}: {len(image.files)} layer(s), {image.size / 1e6:.0f} MB gzip;"
        f" capped pull {pull:.2f} s ({image.size / MIB / pull:.0f} MiB/s),"
        f" one zlib pass {inflate:.2f} s"
    )
    print(f"  {'connections':<22} {'index':>8} {'/ pull':>7} {'/ zlib':>7} {'peak RSS':>10}")
    ok = True
    for case in capped_cases:
        connections, run = case[2], best[case]
        seconds = run["seconds"]
        note = ""
        if connections == default and len(image.files) == 1:
            note = f"  (target <= {TARGET_PULL}: {_verdict(seconds / pull, TARGET_PULL)}; "
            note += f"moonshot <= {MOONSHOT_ZLIB} of zlib: "
            note += f"{_verdict(seconds / inflate, MOONSHOT_ZLIB)})"
            ok &= seconds / pull <= TARGET_PULL
        label = f"{connections}{' (default)' if connections == default else ''}, capped"
        print(
            f"  {label:<22} {seconds:>6.2f} s {seconds / pull:>7.2f} {seconds / inflate:>7.2f}"
            f" {run['peak_kib'] / 1024:>6.0f} MiB{note}"
        )
    run = best[build_case]
    print(
        f"  {'engine on local files':<22} {run['seconds']:>6.2f} s {'':>7}"
        f" {run['seconds'] / inflate:>7.2f} {run['peak_kib'] / 1024:>6.0f} MiB"
    )
    for case in extra:
        run = best[case]
        print(
            f"  {f'{case[2]}, no cap':<22} {run['seconds']:>6.2f} s {'':>7}"
            f" {run['seconds'] / inflate:>7.2f} {run['peak_kib'] / 1024:>6.0f} MiB"
        )
    run = best[uncapped_case]
    seconds = run["seconds"]
    ratio = seconds / inflate
    ok &= ratio <= TARGET_UNCAPPED_ZLIB
    print(
        f"  {f'{default}, no cap':<22} {seconds:>6.2f} s {'':>7} {ratio:>7.2f}"
        f" {run['peak_kib'] / 1024:>6.0f} MiB"
        f"  (target <= {TARGET_UNCAPPED_ZLIB}: {_verdict(ratio, TARGET_UNCAPPED_ZLIB)})"
    )
    cores = len(os.sched_getaffinity(0))
    cpu = run["cpu"] + run["server_cpu"]
    print(
        f"  {'':<22} CPU: index {run['cpu']:.2f} s + registry {run['server_cpu']:.2f} s"
        f" = {cpu:.2f} s; on {cores} cores at least {cpu / cores:.2f} s"
        f" ({cpu / cores / inflate:.2f} of zlib); the engine alone: {best[build_case]['cpu']:.2f} s"
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate-mib", type=float, default=40.0, help="cap per connection")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="small images: a smoke run")
    parser.add_argument("--proxy", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.proxy:
        _proxy_child(args.proxy[0], float(args.proxy[1]))
        return 0
    if args.child:
        task, target, connections, label = args.child
        print(json.dumps(_child(task, target, int(connections), label)))
        return 0
    if not installed():
        print("network benchmark: docker-registry is not installed; skipped")
        return 1
    if args.quick:
        one = engine_bench.ensure_layer(engine_bench.QUICK[0])
        images = [Image("one-layer", (one,)), Image("multi-layer", _multi_layer_files(3, 16))]
    else:
        one = engine_bench.ensure_layer(engine_bench.FULL[0])
        images = [Image("one-layer", (one,)), Image("multi-layer", _multi_layer_files(4, 96))]
    print(
        f"\n== network: index vs a pull over connections capped at {args.rate_mib:g} MiB/s each,"
        f" and vs one zlib pass (best of {args.rounds}, fresh processes) =="
    )
    ok = True
    with running_registry() as registry:
        for image in images:
            _push(registry.client(), image)
        with capped_proxy(registry.host, args.rate_mib * MIB) as capped:
            for image in images:
                sweep = SWEEP if len(image.files) == 1 else (1, settings.DEFAULT_BLOB_CONNECTIONS)
                ok &= _report(image, registry, capped, args.rounds, sweep)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
