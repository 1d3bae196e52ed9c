"""Running jobs: the driver loop and its runners (in the kernel, engines, Dask)."""
