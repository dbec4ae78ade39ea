"""gridrun.fit: Keras-style, JIT-compiled training of Flax models (see docs/fit.md).

Modules: loop (fit_loop: your own init/step functions), layers (Sequential spec and its linen module), losses, optimizers, callbacks, engine (pure
init/epoch functions, compiled once per static structure), fit (the front end), history, summary.
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
