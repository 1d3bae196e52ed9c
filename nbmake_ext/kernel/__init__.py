"""Code that runs in the process that makes: a Jupyter kernel, the console or a script.

The run loop (driver.py) and the runners as that process sees them: the in-kernel runner,
the engine pool (the kernel's side of the engine processes), the Dask runner (the kernel's
side of a cluster), what a runner is told and reports (runner.py), and what views are told
(observer.py). Nothing here is imported by an engine process or a Dask worker; what those
share with this process is in ``nbmake_ext.shared``.
"""
