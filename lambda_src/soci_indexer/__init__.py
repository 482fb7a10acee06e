"""Streaming SOCI (Seekable OCI) index builder.

The engine (``tar``, ``inflate``, ``ztoc``, ``layer``) turns a layer stream
into a zTOC byte-identical to the reference implementation's. ``oci``,
``registry`` and ``pipeline`` turn a pushed image into a SOCI-enabled image;
``handler`` is the Lambda entry point and ``cli`` the command line.

Standard library only (plus boto3 where the Lambda runtime provides it), so
this directory is the Lambda asset as it stands.
"""

__version__ = "0.1.0"

DEFAULT_BUILD_TOOL = f"soci-fargate v{__version__}"
DEFAULT_SPAN_SIZE = 4 * 1024 * 1024
DEFAULT_MIN_LAYER_SIZE = 10 * 1024 * 1024
