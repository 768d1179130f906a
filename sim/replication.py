"""Old path of :mod:`sim.checks.replication` (and ``run``, now
:func:`sim.cluster.cluster.run_replication`), kept because notebooks and docs import it."""

from sim.checks.replication import *  # noqa: F403
from sim.cluster.cluster import run_replication as run  # noqa: F401
