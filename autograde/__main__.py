"""``python -m autograde``: see :mod:`autograde.cli`."""
import sys

from .cli import main

sys.exit(main())
