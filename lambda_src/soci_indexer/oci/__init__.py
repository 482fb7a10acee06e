"""OCI images and registries: ``reference`` (parsing ``host/repo:tag@digest``),
``manifests`` (manifests, indexes and the SOCI v2 conversion), ``gojson`` (JSON as
Go writes it), ``client`` (the distribution API: retries, Range, uploads) and
``auth`` (where credentials come from). Knows nothing of AWS; imports only
``settings`` and ``errors``.
"""
