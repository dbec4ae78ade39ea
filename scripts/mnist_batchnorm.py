"""Batch normalization (section 13.7.2): the large 256-128-64 network, normalized after every hidden layer.

    python scripts/mnist_batchnorm.py --dataset digits --epochs 5
"""

import gridrun
from gridrun import BatchNorm, Dense, Sequential
from gridrun.datasets import load_prepared

FLAGS = gridrun.flags(
    gridrun.flag_string("dataset", "auto", "mnist | fashion_mnist | digits | auto (the first one present)"),
    gridrun.flag_integer("epochs", 25, "passes over the training data"),
    gridrun.flag_integer("batch_size", 128, "samples per gradient step"),
)

data = load_prepared(FLAGS.dataset)
(x_train, y_train), (x_test, y_test) = data
gridrun.write_properties(dataset=data.name)  # the "dataset" column of ls_runs()
print(f"Data: {data.name}, {len(x_train):,} training and {len(x_test):,} test images")

model_w_norm = Sequential([
    Dense(256, activation="relu"),
    BatchNorm(),
    Dense(128, activation="relu"),
    BatchNorm(),
    Dense(64, activation="relu"),
    BatchNorm(),
    Dense(data.num_classes, activation="softmax"),
])

history = gridrun.fit(
    model_w_norm, x_train, y_train,
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
