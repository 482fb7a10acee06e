"""``python -m soci_indexer`` is the ``soci-indexer`` command."""

import sys

from soci_indexer.cli.main import main

sys.exit(main())
