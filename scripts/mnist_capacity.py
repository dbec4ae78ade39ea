"""Model capacity (section 13.7.1): one of the nine networks of the chapter's capacity table.

    size     1 layer   2 layers    3 layers
    small    16        16, 8       16, 8, 4
    medium   64        64, 32      64, 32, 16
    large    256       256, 128    256, 128, 64

With --batchnorm true a batch normalization layer follows every hidden layer (section 13.7.2).
Compare all nine, with and without batch normalization:

    gridrun tuning-run scripts/mnist_capacity.py --flag size=small,medium,large --flag layers=1,2,3 \
        --flag batchnorm=false,true
"""

import gridrun
from gridrun import BatchNorm, Dense, Sequential
from gridrun.datasets import load_prepared

FLAGS = gridrun.flags(
    gridrun.flag_string("dataset", "auto", "mnist | fashion_mnist | digits | auto (the first one present)"),
    gridrun.flag_string("size", "medium", "small | medium | large: nodes per layer, from the capacity table"),
    gridrun.flag_integer("layers", 2, "number of hidden layers: 1, 2 or 3"),
    gridrun.flag_boolean("batchnorm", False, "add batch normalization after each hidden layer"),
    gridrun.flag_integer("epochs", 25, "passes over the training data"),
    gridrun.flag_integer("batch_size", 128, "samples per gradient step"),
)

CAPACITY = {"small": (16, 8, 4), "medium": (64, 32, 16), "large": (256, 128, 64)}
if FLAGS.size not in CAPACITY:
    raise gridrun.FlagError(f"flag 'size' is {FLAGS.size!r}: use small, medium or large")
if FLAGS.layers not in (1, 2, 3):
    raise gridrun.FlagError(f"flag 'layers' is {FLAGS.layers}: use 1, 2 or 3")

data = load_prepared(FLAGS.dataset)
(x_train, y_train), (x_test, y_test) = data
gridrun.write_properties(dataset=data.name)  # the "dataset" column of ls_runs()
units = CAPACITY[FLAGS.size][: FLAGS.layers]
print(f"Data: {data.name}; hidden layers: {', '.join(map(str, units))}; batch normalization: {FLAGS.batchnorm}")

model = Sequential()
for n in units:
    model.add(Dense(n, activation="relu"))
    if FLAGS.batchnorm:
        model.add(BatchNorm())
model.add(Dense(data.num_classes, activation="softmax"))

history = gridrun.fit(
    model, x_train, y_train,
    loss="categorical_crossentropy",
    optimizer="rmsprop",
    metrics=("accuracy",),
    epochs=FLAGS.epochs,
    batch_size=FLAGS.batch_size,
    validation_split=0.2,
    verbose=0,
)
print(history)
print(f"History plot: {history.plot()}")

scores = gridrun.evaluate(history, x_test, y_test)
print(f"Test loss: {scores['loss']:.4f}, test accuracy: {scores['acc']:.4f}")
