"""``python -m quagga``: the same as the ``quagga`` console script."""

import sys

from quagga.cli import main

sys.exit(main())
