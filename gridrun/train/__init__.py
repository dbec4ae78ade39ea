"""gridrun.fit: Keras-style, JIT-compiled training of Flax models (see docs/fit.md).

Modules: fit (the Keras-style front end), loop (fit_loop: your own init/step functions), driver (the
one epoch loop and stop rule every path uses, and the TrainingProgram protocol), engine (fit's pure
init/epoch functions, compiled once per static structure), population/ (many trials as one vmapped
program), widths (width merging), layers (Sequential spec and its linen module), losses, optimizers,
callbacks, history, summary.
"""

from .callbacks import EarlyStopping, LambdaCallback, ReduceLROnPlateau, Stopper
from .fit import evaluate, fit, predict
from .history import History
from .layers import BatchNorm, Dense, Dropout, Sequential, l1, l1_l2, l2
from .loop import fit_loop
from .optimizers import optimizer

__all__ = [
    "BatchNorm",
    "Dense",
    "Dropout",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "ReduceLROnPlateau",
    "Sequential",
    "Stopper",
    "evaluate",
    "fit",
    "fit_loop",
    "l1",
    "l1_l2",
    "l2",
    "optimizer",
    "predict",
]
