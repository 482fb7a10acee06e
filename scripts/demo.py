"""`make demo`: the whole path on one machine, no AWS account and no Docker.

1. start a real OCI registry (Debian's docker-registry) on a free loopback port;
2. build a two-platform image (linux/amd64, linux/arm64) from generated layers,
   two above the 10 MiB threshold per platform and one small, and push it;
3. feed an ECR push event shaped like the real one through the Lambda handler's
   own code path, with the registry client pointed at the local registry;
4. feed it again: the image is found indexed and nothing is pushed;
5. verify the SOCI-enabled image the way the snapshotter reads it;
6. deploy time: a CloudFormation Create request through the custom resource's
   ``on_event`` and ``is_complete`` (what ``SociImage`` runs), writing the
   SOCI-enabled image into another repository, then verify the image its
   ``ImageUri`` names; a second Create answers at once, reading no layer;
7. synthesize the CDK app;
8. print a short report, and stop the registry (also on failure or Ctrl-C).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "lambda_src")]
os.environ.setdefault("LOG_LEVEL", "WARNING")  # the handler's JSON logs: problems only

from soci_indexer import settings, verify  # noqa: E402
from soci_indexer.aws import custom_resource, handler  # noqa: E402
from support.images import MIB, PlatformImage, PushedImage, gzip_tar_layer, push_image  # noqa: E402
from support.registry import LocalRegistry, RegistryUnavailable, running_registry  # noqa: E402

REPOSITORY = "team-a/simulation"
TARGET_REPOSITORY = "team-a/simulation-lazy"  # where the deploy-time resource writes
TAG = "v1.4.2"
ACCOUNT = "123456789012"
REGION = "us-west-2"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:soci-index-builder"


@dataclass
class DemoContext:
    """What the Lambda runtime hands the handler: a request id, an ARN and a clock."""

    deadline: float
    aws_request_id: str = "demo-request-0001"
    invoked_function_arn: str = FUNCTION_ARN

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


class Timer:
    def __init__(self) -> None:
        self.steps: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        print(f"-- {name}", flush=True)
        started = time.monotonic()
        try:
            yield
        finally:
            self.steps.append((name, time.monotonic() - started))


def build_image(registry: LocalRegistry) -> PushedImage:
    """Two platforms, each with two ~11 MiB gzip layers (mostly incompressible) and one small."""
    platforms = [
        PlatformImage(
            "linux",
            arch,
            (
                gzip_tar_layer(0.2, seed=seed),
                gzip_tar_layer(12, seed=seed + 1, random_share=0.9),
                gzip_tar_layer(12, seed=seed + 2, random_share=0.9),
            ),
            variant="v8" if arch == "arm64" else "",
        )
        for arch, seed in (("amd64", 100), ("arm64", 200))
    ]
    return push_image(registry.client(), REPOSITORY, TAG, platforms)


def push_event(pushed: PushedImage) -> dict[str, object]:
    """An EventBridge "ECR Image Action" event, as ECR sends it for a tagged push."""
    event: dict[str, object] = json.loads(
        (ROOT / "tests" / "events" / "push-tagged-with-media-types.json").read_text()
    )
    detail = dict(event["detail"])  # type: ignore[call-overload]
    detail.update(
        {
            "repository-name": REPOSITORY,
            "image-digest": pushed.digest,
            "image-tag": TAG,
            "manifest-media-type": pushed.media_type,
        }
    )
    return {**event, "account": ACCOUNT, "region": REGION, "detail": detail}


def invoke(registry: LocalRegistry, event: dict[str, object]) -> tuple[dict[str, object], int]:
    """Run the Lambda handler's code path on ``event``; returns its answer and how many
    JSON log/metric lines it printed (kept out of the report)."""
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        answer = handler.process_event(
            event,
            DemoContext(deadline=time.monotonic() + 900),
            client_factory=lambda account, region: registry.client(),
        )
    return answer, len(captured.getvalue().splitlines())


def create_request(registry: LocalRegistry) -> dict[str, object]:
    """A CloudFormation Create request for ``Custom::SociImage``, as the provider passes it."""
    return {
        "RequestType": "Create",
        "RequestId": "demo-create-0001",
        "StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/Simulation/demo",
        "LogicalResourceId": "SimulationImage",
        "ResourceType": settings.CUSTOM_RESOURCE_TYPE,
        "ResponseURL": "https://cloudformation-custom-resource-response.example/demo",
        "ResourceProperties": {
            settings.CR_REGISTRY: registry.host,
            settings.CR_REPOSITORY: REPOSITORY,
            settings.CR_REFERENCE: TAG,
            settings.CR_TARGET_REPOSITORY: TARGET_REPOSITORY,
        },
    }


def deploy(
    registry: LocalRegistry, layer_gets: list[str]
) -> tuple[dict[str, object], dict[str, object]]:
    """on_event, then is_complete until done, as the provider framework polls them;
    ``layer_gets`` collects the blob GETs (every blob the run read)."""

    def observe(method: str, url: str, status: int) -> None:
        if method == "GET" and "/blobs/sha256:" in url:
            layer_gets.append(url)

    client = registry.client(observer=observe)
    event = create_request(registry)
    context = DemoContext(deadline=time.monotonic() + 900)
    with contextlib.redirect_stdout(io.StringIO()):
        answer = custom_resource.process_on_event(
            event, context, client_factory=lambda host: client
        )
        done: dict[str, object] = {"IsComplete": False}
        for _ in range(3):
            done = custom_resource.process_is_complete(
                {**event, **answer}, context, client_factory=lambda host: client
            )
            if done["IsComplete"]:
                break
    return answer, done


def synth(timer: Timer) -> str:
    cdk = ROOT / "node_modules" / ".bin" / "cdk"
    if not (ROOT / "app.py").exists():
        return "skipped: there is no app.py yet"
    if not cdk.exists():
        return "skipped: node_modules/.bin/cdk is missing (run `make demo`, which installs it)"
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    with timer.step("cdk synth"):
        done = subprocess.run(
            [str(cdk), "synth", "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True
        )
    if done.returncode != 0:
        raise SystemExit(f"cdk synth failed:\n{done.stderr[-3000:]}")
    templates = sorted(p.name for p in (ROOT / "cdk.out").glob("*.template.json"))
    return f"ok ({', '.join(templates) or 'no templates'})"


def run() -> int:
    timer = Timer()
    started = time.monotonic()
    with running_registry() as registry:  # stopped when the block ends, however it ends
        timer.steps.append(("start docker-registry", time.monotonic() - started))
        print(f"-- docker-registry on {registry.host}")
        return demo(registry, timer)


def demo(registry: LocalRegistry, timer: Timer) -> int:
    with timer.step("generate and push a two-platform image"):
        pushed = build_image(registry)
    image_ref = f"{registry.host}/{REPOSITORY}:{TAG}"
    print(f"   pushed {image_ref}@{pushed.digest}")

    event = push_event(pushed)
    with timer.step("handler: ECR push event -> SOCI index"):
        answer, log_lines = invoke(registry, event)
    print(f"   handler answered {json.dumps(answer)} ({log_lines} log/metric lines)")
    if answer.get("status") != "indexed":
        print("demo FAILED: the image was not indexed")
        return 1
    with timer.step("handler again: same event"):
        again, _ = invoke(registry, event)
    print(f"   handler answered {json.dumps(again)}")

    output_tag = f"{TAG}-soci"
    with timer.step(f"verify {output_tag}"):
        report = verify.verify_image(registry.client(), REPOSITORY, output_tag)
    print("\n".join(f"   {line}" for line in verify.describe(report)))

    with timer.step(f"custom resource: Create, SOCI-enabled image into {TARGET_REPOSITORY}"):
        created, done = deploy(registry, [])
    data = {**_mapping(created.get("Data")), **_mapping(done.get("Data"))}
    image_uri = str(data.get(settings.CR_IMAGE_URI, ""))
    print(f"   on_event answered {json.dumps(created)}")
    print(f"   is_complete answered IsComplete={done.get('IsComplete')}, ImageUri {image_uri}")
    if not image_uri:
        print("demo FAILED: the custom resource gave no ImageUri")
        return 1
    with timer.step("verify the image ImageUri names"):
        deployed = verify.verify_image(
            registry.client(), TARGET_REPOSITORY, image_uri.rpartition("@")[2]
        )
    print(f"   verify {'OK' if deployed.ok else 'FAILED'}: {len(deployed.layers)} layers checked")
    with timer.step("custom resource: the same Create again"):
        blob_gets: list[str] = []
        again, _ = deploy(registry, blob_gets)
    same = _mapping(again.get("Data")).get(settings.CR_IMAGE_URI) == image_uri
    print(
        f"   on_event answered with {'the same' if same else 'ANOTHER'} ImageUri at once, "
        f"{len(blob_gets)} blobs read (manifests only)"
    )

    synth_result = synth(timer)
    print_report(pushed, answer, report, synth_result, timer)
    print(f"deploy time      {image_uri}  verify {'OK' if deployed.ok else 'FAILED'}")
    return 0 if report.ok and deployed.ok and same else 1


def _mapping(value: object) -> dict[str, object]:
    return dict(value) if isinstance(value, dict) else {}


def print_report(
    pushed: PushedImage,
    answer: dict[str, object],
    report: verify.VerifyReport,
    synth_result: str,
    timer: Timer,
) -> None:
    layers = {check.layer.digest for check in report.layers}
    ztocs = {check.ztoc_digest for check in report.layers}
    print("\n== report")
    print(f"image            {REPOSITORY}:{TAG}@{pushed.digest}")
    print(f"SOCI-enabled     {answer.get('output')}")
    for platform, digest in pushed.manifests.items():
        print(f"  {platform:<15}original manifest {digest}")
    print(f"layers indexed   {len(layers)} (zTOCs: {len(ztocs)})")
    for check in report.layers:
        print(f"  {check.platform:<15}{check.layer.digest[:19]} -> zTOC {check.ztoc_digest[:19]}")
    print(
        f"lazy start       {report.metadata_bytes / MIB:.2f} MiB to start (manifests, SOCI"
        f" indexes, zTOCs) + {report.sample_bytes / MIB:.2f} MiB to read {report.files_read}"
        f" sampled files, of {report.image_bytes / MIB:.2f} MiB in the image"
    )
    print(f"verify           {'OK' if report.ok else 'FAILED'}")
    print(f"cdk synth        {synth_result}")
    print("timings          " + ", ".join(f"{name}: {secs:.1f} s" for name, secs in timer.steps))


def main() -> int:
    if shutil.which("docker-registry") is None:
        print("docker-registry is missing: run scripts/install-system-deps.sh", file=sys.stderr)
        return 1
    try:
        return run()
    except RegistryUnavailable as exc:
        print(f"demo FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: registry stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
