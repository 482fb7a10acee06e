"""Streaming SOCI (Seekable OCI) index builder.

The package is layered; each folder imports only the ones below it (checked
by import-linter in ``make test``):

- ``cli/``: the ``soci-indexer`` command and its progress display.
- ``aws/``: Lambda entry points, ECR events and hosts and credentials,
  configuration, telemetry, ECS pull times.
- ``pipeline``, ``verify``: an image in a registry to a SOCI-enabled image, and back.
- ``oci/``: references, manifests, the registry client and its auth.
- ``engine/``: tar, inflate, zTOC, the streaming build and the read-back.
- ``settings``, ``errors``: constants and error types every layer shares.

Standard library only (plus boto3 where the Lambda runtime provides it), so
this directory is the Lambda asset as it stands. This module imports nothing
but ``settings``, so the constructs can read settings without the engine.
"""

from soci_indexer.settings import VERSION as __version__

__all__ = ["__version__"]
