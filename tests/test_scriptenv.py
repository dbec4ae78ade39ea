"""script_environment: the one place a script run's sys.argv, sys.path and __main__ are saved and put back."""

import sys
import threading
import types

import pytest

from gridrun._scriptenv import script_environment


def test_argv_path_and_main_are_put_back_after_an_exception(tmp_path):
    argv, path, main = list(sys.argv), list(sys.path), sys.modules["__main__"]
    with pytest.raises(RuntimeError, match="boom"):
        with script_environment(tmp_path, ["train.py", "--lr", "0.1"]):
            assert sys.argv == ["train.py", "--lr", "0.1"]
            assert sys.path[0] == str(tmp_path)
            sys.modules["__main__"] = types.ModuleType("__main__")  # as runpy does, cut short by an error
            raise RuntimeError("boom")
    assert sys.argv == argv and sys.path == path and sys.modules["__main__"] is main


def test_a_folder_already_on_the_path_is_left_there(tmp_path):
    sys.path.insert(0, str(tmp_path))
    try:
        with script_environment(tmp_path, None):
            assert sys.path.count(str(tmp_path)) == 1
        assert sys.path[0] == str(tmp_path)  # not removed: the caller put it there
    finally:
        sys.path.remove(str(tmp_path))


def test_main_is_not_put_back_off_the_main_thread(tmp_path):
    """Population threads share __main__: their coordinator restores it once all have ended."""
    main = sys.modules["__main__"]
    script_main = types.ModuleType("__main__")
    seen = []

    def trial():
        with script_environment(tmp_path, ["t.py"]):
            sys.modules["__main__"] = script_main
        seen.append(sys.modules["__main__"])

    try:
        with script_environment(tmp_path):  # the coordinator, on the main thread
            t = threading.Thread(target=trial)
            t.start()
            t.join()
            assert seen == [script_main]  # the trial thread left it as it was
        assert sys.modules["__main__"] is main  # the coordinator put it back
    finally:
        sys.modules["__main__"] = main


def test_restore_main_false_leaves_main_alone(tmp_path):
    main = sys.modules["__main__"]
    other = types.ModuleType("__main__")
    try:
        with script_environment(tmp_path, restore_main=False):
            sys.modules["__main__"] = other
        assert sys.modules["__main__"] is other
    finally:
        sys.modules["__main__"] = main
