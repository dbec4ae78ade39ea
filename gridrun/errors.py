"""Errors raised for user mistakes. The CLI prints them as one clear message, without a traceback."""


class GridrunError(Exception):
    """A problem with the user's input, with a message that names the problem and the fix."""


class FlagError(GridrunError):
    """An undeclared flag, a value of the wrong type, a bad flags.yml, an unknown profile."""
