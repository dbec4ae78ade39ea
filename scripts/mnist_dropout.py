"""Dropout (section 13.7.3): the 256-128-64 network with dropout after every hidden layer.

The defaults are the chapter's code (20% everywhere, no batch normalization). Figure 13.9's model is

    python scripts/mnist_dropout.py --dropout1 0.4 --dropout2 0.3 --dropout3 0.2 --batchnorm true
"""

import gridrun
from gridrun import BatchNorm, Dense, Dropout, Sequential
from gridrun.datasets import load_prepared

FLAGS = gridrun.flags(
    gridrun.flag_string("dataset", "auto", "mnist | fashion_mnist | digits | auto (the first one present)"),
    gridrun.flag_numeric("dropout1", 0.2, "dropout rate after hidden layer 1"),
    gridrun.flag_numeric("dropout2", 0.2, "dropout rate after hidden layer 2"),
    gridrun.flag_numeric("dropout3", 0.2, "dropout rate after hidden layer 3"),
    gridrun.flag_boolean("batchnorm", False, "add batch normalization before each dropout layer"),
    gridrun.flag_integer("epochs", 25, "passes over the training data"),
    gridrun.flag_integer("batch_size", 128, "samples per gradient step"),
)

data = load_prepared(FLAGS.dataset)
(x_train, y_train), (x_test, y_test) = data
gridrun.write_properties(dataset=data.name)  # the "dataset" column of ls_runs()
print(f"Data: {data.name}, {len(x_train):,} training and {len(x_test):,} test images")

model_w_drop = Sequential()
for units, rate in ((256, FLAGS.dropout1), (128, FLAGS.dropout2), (64, FLAGS.dropout3)):
    model_w_drop.add(Dense(units, activation="relu"))
    if FLAGS.batchnorm:
        model_w_drop.add(BatchNorm())
    model_w_drop.add(Dropout(rate))
model_w_drop.add(Dense(data.num_classes, activation="softmax"))

history = gridrun.fit(
    model_w_drop, x_train, y_train,
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
