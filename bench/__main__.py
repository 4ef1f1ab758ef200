"""``python -m bench`` (``make bench``): the quick set; ``python -m bench --help`` for the rest."""

from bench.cli import main
from orchest_operator.cli.operator import tune_garbage_collector

# The emulator and the fake kubelet share this process: its collector is tuned as the operator tunes its
# own, so the emulator's collections (1.4 s of a 100-run benchmark untuned) weigh less on both sides.
tune_garbage_collector()
raise SystemExit(main())
