"""The world around the nodes and the whole run: backends (backend), links and partitions
(network), the fault timeline (faults), scenario files (scenario), and the cluster that builds
everything from a scenario and runs it (cluster).

``from sim.cluster import Cluster`` keeps working (notebooks use it); it is resolved lazily so that
importing a module of this package does not import the whole cluster.
"""


def __getattr__(name: str):
    if name in ("Cluster", "run_replication"):
        from sim.cluster import cluster

        return getattr(cluster, name)
    raise AttributeError(f"module 'sim.cluster' has no attribute {name!r}")
