"""``python -m orchest_operator.cli``: the ``orchest`` command without its console script."""

import sys

from orchest_operator.cli import main

sys.exit(main())
