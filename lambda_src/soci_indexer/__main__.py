"""``python -m soci_indexer`` is the ``soci-indexer`` command."""

import sys

from soci_indexer.cli import main

sys.exit(main())
