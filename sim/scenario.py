"""Old path of :mod:`sim.cluster.scenario`, kept because notebooks and docs import it."""

from sim.cluster.scenario import *  # noqa: F403
from sim.cluster.scenario import Scenario, ScenarioError, load, loads  # noqa: F401
