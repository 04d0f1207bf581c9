"""``python -m smh_async`` runs the command line, like the ``smh-async`` script."""

import sys

from smh_async.cli import main

sys.exit(main())
