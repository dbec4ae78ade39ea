"""The README's two set-up commands are the ones CI runs, and its quick start works as written."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fenced(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_ci_runs_the_readme_test_command():
    bash = fenced("bash")
    assert len(bash) >= 2
    install_and_test = bash[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert install_and_test in ci.splitlines()
    assert "pytest" in install_and_test and 'pip install -q -e ".[test]"' in install_and_test


def test_main_job_command_names_existing_script():
    main_job = fenced("bash")[0].strip()
    script = re.search(r"training-run (\S+)", main_job).group(1)
    assert (ROOT / script).is_file()
    assert "dataset=digits" in main_job  # the embedded default data: no download needed


def test_quick_start_script_runs(tmp_path):
    code = fenced("python")[0]
    (tmp_path / "train.py").write_text(code.replace("epochs=20", "epochs=2"))
    out = subprocess.run([sys.executable, "train.py", "--nodes1", "32"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "runs").exists()
