import io

import gridrun
from gridrun.train.progressbar import EpochProgress


def test_plain_lines_when_not_a_terminal(capsys):
    (x, y), _ = gridrun.datasets.load_prepared("digits")
    model = gridrun.Sequential([gridrun.Dense(10, activation="softmax")])
    gridrun.fit(model, x, y, loss="categorical_crossentropy", metrics=("accuracy",), epochs=2,
                validation_split=0.2, verbose=1)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Epoch 1/2 - ") and "val_loss:" in out[0] and "acc:" in out[0]
    assert out[1].startswith("Epoch 2/2 - ")


def test_live_bar_on_a_terminal():
    buf = io.StringIO()
    bar = EpochProgress(3, stream=buf, terminal=True)
    bar.update(0, {"loss": 0.5, "acc": 0.75})
    bar.update(1, {"loss": 0.25, "acc": 0.875})
    bar.note("Epoch 2: early stopping")
    bar.close()
    text = buf.getvalue()
    assert "2/3" in text and "loss: 0.25" in text and "early stopping" in text
    assert "Epoch 1/3 -" not in text  # a bar, not the plain lines
