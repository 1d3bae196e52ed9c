"""Code that runs on a Dask worker for ``parmake --dask``: the task a job becomes.

The kernel's side is ``nbmake_ext.kernel.dask``; it imports ``task`` only to name the task
function in the graphs it submits (Dask pickles it by reference: this module path must
exist on the workers) and to read a task's outcome. Workers import nothing of
``nbmake_ext.kernel``.
"""
