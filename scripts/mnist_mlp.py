"""The chapter's base model (sections 13.4-13.6): a 128-64-10 feedforward network trained with RMSProp.

    python scripts/mnist_mlp.py                       # Fashion-MNIST if present, else MNIST, else digits
    python scripts/mnist_mlp.py --dataset digits --epochs 5
    gridrun training-run scripts/mnist_mlp.py --flag nodes1=256
"""

import gridrun
from gridrun import Dense, Sequential
from gridrun.datasets import load_prepared

FLAGS = gridrun.flags(
    gridrun.flag_string("dataset", "auto", "mnist | fashion_mnist | digits | auto (the first one present)"),
    gridrun.flag_integer("nodes1", 128, "units in hidden layer 1"),
    gridrun.flag_integer("nodes2", 64, "units in hidden layer 2"),
    gridrun.flag_string("optimizer", "rmsprop", "rmsprop | adam | sgd | adagrad"),
    gridrun.flag_integer("epochs", 25, "passes over the training data"),
    gridrun.flag_integer("batch_size", 128, "samples per gradient step"),
)

# 13.1: features flattened and scaled to [0, 1], labels one-hot encoded
data = load_prepared(FLAGS.dataset)
(x_train, y_train), (x_test, y_test) = data
gridrun.write_properties(dataset=data.name)  # the "dataset" column of ls_runs()
print(f"Data: {data.name}, {len(x_train):,} training and {len(x_test):,} test images, {x_train.shape[1]} features")

# 13.4: network architecture
model = Sequential([
    Dense(FLAGS.nodes1, activation="relu"),
    Dense(FLAGS.nodes2, activation="relu"),
    Dense(data.num_classes, activation="softmax"),
])

# 13.5-13.6: backpropagation and model training
history = gridrun.fit(
    model, x_train, y_train,
    loss="categorical_crossentropy",
    optimizer=FLAGS.optimizer,
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
