"""`python -m tickstrata` is the `tickstrata` command."""

import sys

from tickstrata.cli.main import main

sys.exit(main())
