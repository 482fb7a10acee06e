"""Deterministic test layers and images, pushed with the project's own registry client.

Every generator is a pure function of its arguments (seeded PRNG, fixed tar
metadata, gzip mtime 0), so a layer has the same digest on every run and on
every machine. Results are cached: tests asking for the same layer share it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from soci_indexer import settings
from soci_indexer.oci.client import RegistryClient

MIB = 1024 * 1024
GZIP_OCI = "application/vnd.oci.image.layer.v1.tar+gzip"
GZIP_DOCKER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
TAR_OCI = "application/vnd.oci.image.layer.v1.tar"
TAR_DOCKER = "application/vnd.docker.image.rootfs.diff.tar"
ZSTD_OCI = "application/vnd.oci.image.layer.v1.tar+zstd"
_DOCKER_TYPES = {GZIP_OCI: GZIP_DOCKER, TAR_OCI: TAR_DOCKER}
_MTIME = 1_700_000_000
_WORDS = (
    b"lazy loading container image layer seekable index span checkpoint fargate "
    b"registry manifest digest zstd gzip tar header offset window inflate "
).split()


@dataclass(frozen=True)
class Blob:
    """A layer (or any blob) with the media type it is pushed as."""

    data: bytes = field(repr=False)
    media_type: str
    diff_id: str = ""  # sha256 of the uncompressed tar, when there is one

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        return len(self.data)

    def as_docker(self) -> Blob:
        """The same bytes typed with Docker's media type for them."""
        return Blob(self.data, _DOCKER_TYPES.get(self.media_type, self.media_type), self.diff_id)


def _text(rng: random.Random, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        line = b" ".join(rng.choice(_WORDS) for _ in range(12))
        out += line + b"\n"
    return bytes(out[:size])


def mixed_files(total: int, seed: int, random_share: float) -> list[tuple[str, bytes]]:
    """Files adding up to ``total`` bytes: random (incompressible) and text, ~256 KiB each."""
    rng = random.Random(seed)
    files = []
    written = 0
    index = 0
    while written < total:
        size = min(total - written, rng.randint(64 * 1024, 448 * 1024))
        body = rng.randbytes(size) if rng.random() < random_share else _text(rng, size)
        files.append((f"data/{index // 16:03d}/file-{index:05d}.bin", body))
        written += size
        index += 1
    return files


def tar_archive(files: Sequence[tuple[str, bytes]]) -> bytes:
    """A PAX tar with fixed ownership and times: directories, the files, one symlink."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        directories = sorted({name.rsplit("/", 1)[0] for name, _ in files if "/" in name})
        for directory in directories:
            _add(archive, tarfile.TarInfo(directory), None, tarfile.DIRTYPE, 0o755)
        for name, body in files:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            _add(archive, info, body, tarfile.REGTYPE, 0o644)
        if files:
            link = tarfile.TarInfo("data/first-file")
            link.linkname = files[0][0].split("/", 1)[1]
            _add(archive, link, None, tarfile.SYMTYPE, 0o777)
    return buffer.getvalue()


def _add(
    archive: tarfile.TarFile, info: tarfile.TarInfo, body: bytes | None, kind: bytes, mode: int
) -> None:
    info.type = kind
    info.mode = mode
    info.mtime = _MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    archive.addfile(info, io.BytesIO(body) if body is not None else None)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@lru_cache(maxsize=64)
def tar_layer(mib: float, seed: int, random_share: float = 0.5) -> Blob:
    """An uncompressed tar layer of about ``mib`` MiB."""
    tar = tar_archive(mixed_files(int(mib * MIB), seed, random_share))
    return Blob(tar, TAR_OCI, _sha256(tar))


@lru_cache(maxsize=64)
def gzip_tar_layer(mib: float, seed: int, random_share: float = 0.5, level: int = 1) -> Blob:
    """A gzip tar layer whose tar holds about ``mib`` MiB (random_share of it incompressible)."""
    tar = tar_layer(mib, seed, random_share).data
    return Blob(gzip.compress(tar, compresslevel=level, mtime=0), GZIP_OCI, _sha256(tar))


@lru_cache(maxsize=16)
def zstd_layer(mib: float, seed: int) -> Blob:
    """A blob typed zstd (frame magic then noise): SOCI cannot index zstd layers."""
    body = b"\x28\xb5\x2f\xfd" + random.Random(seed).randbytes(int(mib * MIB))
    return Blob(body, ZSTD_OCI, _sha256(body))


@lru_cache(maxsize=16)
def corrupt_gzip_layer(mib: float, seed: int) -> Blob:
    """A gzip layer with 4 KiB of its deflate stream overwritten in the middle."""
    good = gzip_tar_layer(mib, seed)
    middle = len(good.data) // 2
    data = good.data[:middle] + b"\xff" * 4096 + good.data[middle + 4096 :]
    return Blob(data, GZIP_OCI, good.diff_id)


@lru_cache(maxsize=4)
def zeros_file_layer(mib: int) -> Blob:
    """A gzip tar holding one file of ``mib`` MiB of zeros, as ``tar cf - f | gzip -1`` makes:
    a big file in a small blob, built a piece at a time (the tar is never in memory)."""
    header = tarfile.TarInfo("zeros.bin")
    header.size, header.mtime = mib * MIB, _MTIME
    deflate = zlib.compressobj(1, zlib.DEFLATED, 31)
    tar_digest = hashlib.sha256()
    out = []
    pieces = [header.tobuf(tarfile.USTAR_FORMAT), *([bytes(MIB)] * mib), bytes(1024)]
    for piece in pieces:  # the file ends on a 512-byte boundary: no padding before the end
        tar_digest.update(piece)
        out.append(deflate.compress(piece))
    out.append(deflate.flush())
    return Blob(b"".join(out), GZIP_OCI, "sha256:" + tar_digest.hexdigest())


@dataclass(frozen=True)
class PlatformImage:
    """One platform's image: its layers in order."""

    os: str
    architecture: str
    layers: tuple[Blob, ...]
    variant: str = ""

    @property
    def platform(self) -> str:
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)

    def config(self) -> bytes:
        body = {
            "architecture": self.architecture,
            "os": self.os,
            "config": {"Env": ["PATH=/usr/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [b.diff_id or b.digest for b in self.layers]},
        }
        if self.variant:
            body["variant"] = self.variant
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class PushedImage:
    """What ``push_image`` wrote: the tagged digest and each platform's manifest."""

    repository: str
    tag: str
    digest: str
    media_type: str
    manifests: dict[str, str]  # platform -> manifest digest
    manifest_bytes: dict[str, bytes] = field(repr=False)


def manifest_for(image: PlatformImage, *, docker: bool) -> tuple[bytes, str]:
    """The image manifest (bytes, media type), as a build tool would write it."""
    config = image.config()
    config_type = settings.DOCKER_CONFIG if docker else settings.OCI_CONFIG
    media_type = settings.DOCKER_MANIFEST if docker else settings.OCI_MANIFEST
    layers = [layer.as_docker() if docker else layer for layer in image.layers]
    body = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": config_type, "digest": _sha256(config), "size": len(config)},
        "layers": [{"mediaType": b.media_type, "digest": b.digest, "size": b.size} for b in layers],
    }
    return json.dumps(body, indent=3).encode(), media_type


def push_image(
    client: RegistryClient,
    repository: str,
    tag: str,
    images: Sequence[PlatformImage],
    *,
    docker: bool = False,
    as_index: bool | None = None,
) -> PushedImage:
    """Push blobs, manifests and (for several platforms, or ``as_index``) an index."""
    if as_index is None:
        as_index = len(images) > 1
    manifests: dict[str, str] = {}
    manifest_bytes: dict[str, bytes] = {}
    entries = []
    for image in images:
        for layer in image.layers:
            client.push_blob(repository, layer.data)
        client.push_blob(repository, image.config())
        data, media_type = manifest_for(image, docker=docker)
        digest = _sha256(data)
        client.put_manifest(repository, tag if not as_index else digest, data, media_type)
        manifests[image.platform] = digest
        manifest_bytes[image.platform] = data
        platform = {"architecture": image.architecture, "os": image.os}
        if image.variant:
            platform["variant"] = image.variant
        entries.append(
            {"mediaType": media_type, "digest": digest, "size": len(data), "platform": platform}
        )
    if not as_index:
        (platform_name,) = manifests
        return PushedImage(
            repository, tag, manifests[platform_name], media_type, manifests, manifest_bytes
        )
    index_type = settings.DOCKER_MANIFEST_LIST if docker else settings.OCI_INDEX
    index = json.dumps({"schemaVersion": 2, "mediaType": index_type, "manifests": entries}).encode()
    client.put_manifest(repository, tag, index, index_type)
    return PushedImage(repository, tag, _sha256(index), index_type, manifests, manifest_bytes)
