"""`python -m exporter` runs the same command line as `azdo-exporter`."""

import sys

from exporter.cli import main

sys.exit(main())
