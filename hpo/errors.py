"""The project's own error type: its message names the problem and the fix."""


class HpoError(RuntimeError):
    """An error the user can act on; the CLI prints its message and exits 1."""
