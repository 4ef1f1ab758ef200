"""``python -m bench`` (``make bench``): the quick set; ``python -m bench --help`` for the rest."""

from bench.cli import main

raise SystemExit(main())
