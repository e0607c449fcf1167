"""One exception type for user-facing failures: the CLI prints its message (no traceback) and exits 2."""


class UserError(Exception):
    """Bad input: a config key, a file, a dataset or a checkpoint. The message names the culprit."""
