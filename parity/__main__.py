"""``python -m parity``: the ``parity`` command (parity.cli)."""
import sys

from parity.cli import main

sys.exit(main())
