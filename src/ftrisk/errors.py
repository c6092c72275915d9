"""One exception type for every user-facing error.

The CLI catches :class:`FtriskError` and prints its message as one line
(``ftrisk: error: ...``) with exit code 2 -- never a traceback.  Raise it with a
message that names the file, row or key at fault and says what to do.
"""


class FtriskError(Exception):
    """A problem with the user's input or environment (exit code 2)."""
