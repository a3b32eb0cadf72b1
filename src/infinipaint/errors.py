"""Errors a user can act on. The CLI prints them as one line (exit status 2), no traceback."""


class InfinipaintError(Exception):
    """Base of every user-facing error."""


class CommandError(InfinipaintError):
    """Bad command-line usage or arguments."""


class DataError(InfinipaintError, ValueError):
    """A dataset, shard, manifest or action file that is missing, corrupt or foreign."""


class CheckpointError(InfinipaintError, ValueError):
    """A model or training checkpoint that is missing, truncated, tampered or mismatched."""
