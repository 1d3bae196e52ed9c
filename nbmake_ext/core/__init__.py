"""The pure core: job specs, the graph, signatures and the scheduler.

Nothing here touches files, sockets, threads or IPython, so it is tested in milliseconds
and fuzzed across simulated runs.
"""
