"""Code imported by more than one process role: the making process (``nbmake_ext.kernel``),
an engine (``nbmake_ext.engine``), a Dask worker (``nbmake_ext.dask_worker``).

What a job reports (outcomes.py), how a job's function is called here (call.py), the
context a dynamic job gets (dynamic.py), loading a job's arguments (loading.py), the
kernel/engine signed framing (wire.py) and the in-memory values cache (values_cache.py).
Nothing here imports a role's package.
"""
