"""gridrun.fit: Keras-style, JIT-compiled training of Flax models (see docs/fit.md).

Modules: layers (Sequential spec and its linen module), losses, optimizers, callbacks, engine (pure
init/epoch functions, compiled once per static structure), fit (the front end), history, summary.
"""

from .callbacks import EarlyStopping, LambdaCallback, ReduceLROnPlateau
from .fit import evaluate, fit, predict
from .history import History
from .layers import BatchNorm, Dense, Dropout, Sequential, l1, l1_l2, l2
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
    "evaluate",
    "fit",
    "l1",
    "l1_l2",
    "l2",
    "optimizer",
    "predict",
]
