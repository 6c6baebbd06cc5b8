"""`python -m gateway` runs the `ce-gateway` command line."""

import sys

from gateway.cli import main

sys.exit(main())
