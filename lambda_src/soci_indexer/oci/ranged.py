"""One blob over several connections at once, handed on as one ordered stream of chunks.

A single HTTP stream from ECR (or the S3 URL it redirects blob reads to) is
slower than two vCPUs inflate gzip, so indexing a one-layer image over one
connection takes as long as pulling it. ``stream_blob_ranged`` asks for the
blob in ranges of ``range_size`` bytes over ``connections`` connections and
yields the bytes in order, so the engine reads it exactly as it reads
``RegistryClient.stream_blob``.

- The first range is asked for on the consumer's own thread and streamed as
  it arrives; the registry's answer says whether it honours Range. One that
  ignores it (200, the whole blob) is read as that one stream: nothing is
  fetched twice and no byte is lost.
- Later ranges are fetched by a pool of threads into memory, the consumer
  reading the oldest as it arrives. At most ``connections`` ranges are being
  fetched or waiting to be read (the head counts as one while it lasts), so
  the bytes in flight are bounded by ``connections x range_size`` whatever
  the blob's size.
- Each range is a ``stream_blob`` call of its own, so it is retried and
  resumed from its first missing byte on its own with the client's backoff,
  stops at the client's deadline or cancellation, and follows redirects with
  the Range on the redirected request and no registry credentials sent there.
- The blob's size comes from its descriptor; the caller hashes what it
  reads and compares it with the descriptor, as it does for one stream. A
  registry holding fewer bytes than that refuses the ranges past its end
  (416), which is a ``CorruptLayer``, as the short stream is.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor

from soci_indexer.errors import CorruptLayer, RegistryError
from soci_indexer.oci.client import CHUNK_SIZE, RegistryClient

log = logging.getLogger(__name__)


def stream_blob_ranged(
    client: RegistryClient,
    repository: str,
    digest: str,
    size: int,
    *,
    connections: int,
    range_size: int,
    chunk_size: int = CHUNK_SIZE,
) -> Generator[bytes, None, None]:
    """The blob's ``size`` bytes as ordered chunks, over up to ``connections`` connections.

    One connection, or a blob no larger than one range, is a plain
    ``client.stream_blob``. Close the generator to stop early: ranges not yet
    started are dropped and those being fetched stop at their next chunk.
    """
    if connections < 1 or range_size < 1:
        raise ValueError(
            f"connections and range size must be positive: {connections}, {range_size}"
        )
    if connections == 1 or size <= range_size:
        yield from client.stream_blob(repository, digest, chunk_size=chunk_size)
        return
    ranged, head = client.stream_blob_head(repository, digest, range_size, chunk_size=chunk_size)
    if not ranged:
        log.info("the registry ignores Range for %s: reading it as one stream", digest)
        yield from head
        return
    stop = threading.Event()

    def fetch(start: int, end: int, into: queue.SimpleQueue[bytes | BaseException | None]) -> None:
        chunks = client.stream_blob(repository, digest, start=start, end=end, chunk_size=chunk_size)
        try:
            for chunk in chunks:
                if stop.is_set():
                    return
                into.put(chunk)
            into.put(None)
        except BaseException as exc:  # handed to the consumer, in its place in the stream
            into.put(exc)
        finally:
            chunks.close()

    starts = iter(range(range_size, size, range_size))
    ahead: deque[queue.SimpleQueue[bytes | BaseException | None]] = deque()
    pool = ThreadPoolExecutor(connections, thread_name_prefix="blob-range")

    def top_up(slots: int) -> None:
        """Start ranges until ``slots`` are being fetched or waiting to be read."""
        while len(ahead) < slots and (start := next(starts, None)) is not None:
            ahead.append(queue.SimpleQueue())
            pool.submit(fetch, start, min(start + range_size, size), ahead[-1])

    finished = False
    try:
        top_up(connections - 1)  # the head range holds the consumer's own connection
        yield from head
        while ahead:
            arriving = ahead.popleft()
            top_up(connections - 1)  # the range being read still holds its slot
            while (item := arriving.get()) is not None:
                if isinstance(item, RegistryError) and item.status == 416:
                    raise CorruptLayer(
                        f"the registry holds fewer bytes than the {size} its descriptor says",
                        stream="layer",
                    ) from None
                if isinstance(item, BaseException):
                    raise item
                yield item
        finished = True
    finally:
        # Early stop: ranges not started are dropped, those being fetched end at their next
        # chunk (or the socket timeout) without the consumer waiting for them.
        stop.set()
        pool.shutdown(wait=finished, cancel_futures=True)
        client.close_finished_threads()
