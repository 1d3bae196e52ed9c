"""Job functions for the engine tests, in an importable package so that they pickle by
reference and engines import them (the tests put ``tests/execute`` on PYTHONPATH)."""
