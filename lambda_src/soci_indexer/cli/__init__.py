"""The ``soci-indexer`` command line (``main``) and its progress display
(``progress``). The top layer: may import anything; nothing imports it.
"""
