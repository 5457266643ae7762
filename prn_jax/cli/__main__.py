"""`python -m prn_jax.cli ARGS...` = `prn-jax ARGS...`."""

import sys

from prn_jax.cli import entry

sys.exit(entry())
