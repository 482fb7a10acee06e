"""The engine: one streaming pass over a layer builds its zTOC, byte for byte as soci does.

``tar`` reads headers by Go's rules, ``inflate`` drives libz with Z_BLOCK and
takes checkpoints, ``ztoc`` is the flatbuffers format, ``build`` runs the pass,
``readback`` reads files back through the spans. Knows nothing of registries or AWS:
bytes and streams in, zTOCs out. Imports only ``settings`` and ``errors``.
"""
