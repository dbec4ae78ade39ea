"""Errors raised for user mistakes. The CLI prints them as one clear message, without a traceback."""


class GridrunError(Exception):
    """A problem with the user's input, with a message that names the problem and the fix."""


class FlagError(GridrunError):
    """An undeclared flag, a value of the wrong type, a bad flags.yml, an unknown profile."""


class TrialPruned(BaseException):  # noqa: N818 - named as Optuna's, which users know
    """Raised inside a trial when the sweep's pruner stops it. A BaseException, like KeyboardInterrupt,
    so that a script's `except Exception:` does not swallow it; the runner records the run as pruned."""


class TrialPaused(TrialPruned):
    """Raised inside a trial when a promoting pruner (--prune asha --promote) pauses it at a rung: it
    stops like a pruned trial, its checkpoint kept, and the runner records it as paused; the sweep
    continues it from that checkpoint when it is promoted."""
