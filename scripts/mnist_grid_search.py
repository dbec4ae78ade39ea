"""The chapter's grid search script (section 13.8, mnist-grid-search.R): every tuned setting is a flag,
and each flag declares the chapter's grid values, so the script's own flags are its search space:

    gridrun tuning-run scripts/mnist_grid_search.py --sample 0.05    # 2,916 combinations sampled to 146

`--flag NAME=...` overrides one flag's values (`--flag nodes1=128`, `--flag lr_annealing=uniform(0.02,0.2)`).

Tuning workers run this file many times in one process: the data comes from the memoized loader and
the script keeps no other global state.
"""

import gridrun
from gridrun import BatchNorm, Dense, Dropout, EarlyStopping, ReduceLROnPlateau, Sequential
from gridrun.datasets import load_prepared

FLAGS = gridrun.flags(
    # Nodes
    gridrun.flag_integer("nodes1", 256, "units in hidden layer 1", values=[64, 128, 256]),
    gridrun.flag_integer("nodes2", 128, "units in hidden layer 2", values=[64, 128, 256]),
    gridrun.flag_integer("nodes3", 64, "units in hidden layer 3", values=[64, 128, 256]),
    # Dropout
    gridrun.flag_numeric("dropout1", 0.4, "dropout rate after hidden layer 1", values=[0.2, 0.3, 0.4]),
    gridrun.flag_numeric("dropout2", 0.3, "dropout rate after hidden layer 2", values=[0.2, 0.3, 0.4]),
    gridrun.flag_numeric("dropout3", 0.2, "dropout rate after hidden layer 3", values=[0.2, 0.3, 0.4]),
    # Learning parameters
    gridrun.flag_string("optimizer", "rmsprop", "rmsprop | adam | sgd | adagrad", values=["rmsprop", "adam"]),
    gridrun.flag_numeric("lr_annealing", 0.1, "factor applied to the learning rate when val_loss stalls",
                         values=[0.1, 0.05]),
    # Data and budget
    gridrun.flag_string("dataset", "auto", "mnist | fashion_mnist | digits | auto (the first one present)"),
    gridrun.flag_integer("epochs", 35, "maximum passes over the training data"),
)

(x_train, y_train), (x_test, y_test) = data = load_prepared(FLAGS.dataset)
gridrun.write_properties(dataset=data.name)  # the "dataset" column of ls_runs()

model = Sequential([
    Dense(FLAGS.nodes1, activation="relu"),
    BatchNorm(),
    Dropout(FLAGS.dropout1),
    Dense(FLAGS.nodes2, activation="relu"),
    BatchNorm(),
    Dropout(FLAGS.dropout2),
    Dense(FLAGS.nodes3, activation="relu"),
    BatchNorm(),
    Dropout(FLAGS.dropout3),
    Dense(data.num_classes, activation="softmax"),
])

history = gridrun.fit(
    model, x_train, y_train,
    loss="categorical_crossentropy",
    metrics=("accuracy",),
    optimizer=FLAGS.optimizer,
    epochs=FLAGS.epochs,
    batch_size=128,
    validation_split=0.2,
    callbacks=[EarlyStopping(patience=5), ReduceLROnPlateau(factor=FLAGS.lr_annealing)],
    verbose=0,
)
print(history)

scores = gridrun.evaluate(history, x_test, y_test)
print(f"Test loss: {scores['loss']:.4f}, test accuracy: {scores['acc']:.4f}")
