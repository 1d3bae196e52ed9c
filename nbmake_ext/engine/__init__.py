"""Code that runs only in an engine process (``python -m nbmake_ext.engine``).

The kernel starts engines and talks to them from ``nbmake_ext.kernel.pool``; the two sides
share only ``nbmake_ext.shared`` (the signed framing, outcomes, how a job is called). No
module of the kernel imports this package.
"""
