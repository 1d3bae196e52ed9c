"""Files and shell steps (SPEC 10): input ``File``s, declared outputs, their fingerprints,
what the process that runs a job does with them, and ``sh`` (shell.py)."""
