"""The command line's one error type."""


class CliError(Exception):
    """Bad input: printed as one ``rtsave: error: ...`` line, exit status 2."""
