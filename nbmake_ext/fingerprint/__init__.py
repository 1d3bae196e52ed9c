"""Fingerprints: stable digests of values and of the user's code."""

from .code import (
    CodeFingerprint,
    cell_fingerprint,
    code_fingerprint,
    function_label,
    is_tracked,
    set_tracked_root,
)
from .values import (Unpicklable, counts_by_checksum, digest, result_digest, scan_args,
                     scan_call)

__all__ = [
    "CodeFingerprint",
    "Unpicklable",
    "cell_fingerprint",
    "code_fingerprint",
    "counts_by_checksum",
    "digest",
    "function_label",
    "is_tracked",
    "result_digest",
    "scan_args",
    "scan_call",
    "set_tracked_root",
]
