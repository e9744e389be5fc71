"""``python -m pilcro_lib.runs plan|compute NOTEBOOK ...``: see :mod:`pilcro_lib.runs.cli`."""

import sys

from pilcro_lib.runs.cli import main

sys.exit(main())
