"""Capacity experiments: many seeded scenario runs, on a process pool or a Dask cluster.

``spec`` reads sweep files, ``design`` picks points and seeds, ``runs`` resolves each run's
scenario and runs it, ``engine`` executes any picklable function over payloads, ``metrics``
and ``analysis`` turn runs into rows, confidence intervals and knees, ``outputs`` writes them,
``theory`` holds the queueing formulas the model is checked against, ``command`` is the CLI.
"""
