"""Adjusted learning rate (section 13.7.4): the chapter's best hand-tuned model.

256-128-64 with batch normalization and dropout 0.4 / 0.3 / 0.2, Adam, early stopping after 5 epochs
without improvement, and the learning rate multiplied by 0.05 when the validation loss stalls.

    python scripts/mnist_tuned.py
"""

import gridrun
from gridrun import BatchNorm, Dense, Dropout, EarlyStopping, ReduceLROnPlateau, Sequential
from gridrun.datasets import load_prepared

FLAGS = gridrun.flags(
    gridrun.flag_string("dataset", "auto", "mnist | fashion_mnist | digits | auto (the first one present)"),
    gridrun.flag_string("optimizer", "adam", "rmsprop | adam | sgd | adagrad"),
    gridrun.flag_numeric("lr_annealing", 0.05, "factor applied to the learning rate when val_loss stalls"),
    gridrun.flag_integer("patience", 5, "epochs without val_loss improvement before stopping"),
    gridrun.flag_integer("lr_patience", 10, "epochs without improvement before the lr is reduced (Keras: 10)"),
    gridrun.flag_boolean("restore_best_weights", False, "end with the weights of the best epoch"),
    gridrun.flag_integer("epochs", 35, "maximum passes over the training data"),
    gridrun.flag_integer("batch_size", 128, "samples per gradient step"),
)

data = load_prepared(FLAGS.dataset)
(x_train, y_train), (x_test, y_test) = data
gridrun.write_properties(dataset=data.name)  # the "dataset" column of ls_runs()
print(f"Data: {data.name}, {len(x_train):,} training and {len(x_test):,} test images")

model_w_adj_lrn = Sequential([
    Dense(256, activation="relu"),
    BatchNorm(),
    Dropout(0.4),
    Dense(128, activation="relu"),
    BatchNorm(),
    Dropout(0.3),
    Dense(64, activation="relu"),
    BatchNorm(),
    Dropout(0.2),
    Dense(data.num_classes, activation="softmax"),
])

history = gridrun.fit(
    model_w_adj_lrn, x_train, y_train,
    loss="categorical_crossentropy",
    optimizer=FLAGS.optimizer,
    metrics=("accuracy",),
    epochs=FLAGS.epochs,
    batch_size=FLAGS.batch_size,
    validation_split=0.2,
    callbacks=[
        EarlyStopping(patience=FLAGS.patience, restore_best_weights=FLAGS.restore_best_weights),
        ReduceLROnPlateau(factor=FLAGS.lr_annealing, patience=FLAGS.lr_patience),
    ],
    verbose=0,
)
print(history)
print(f"Optimal: min val_loss {min(history.history['val_loss']):.5f}, max val_acc {max(history.history['val_acc']):.4f}")
print(f"History plot: {history.plot()}")

scores = gridrun.evaluate(history, x_test, y_test)
print(f"Test loss: {scores['loss']:.4f}, test accuracy: {scores['acc']:.4f}")
