"""CLI messages a newcomer meets: an empty spec file is refused before anything is sent, and
a message with square brackets (an install hint) reaches the terminal whole."""

import shutil
import subprocess
import sys
from pathlib import Path


def _curvscope(*args, cwd=None):
    script = Path(sys.executable).with_name("curvscope")
    command = [str(script)] if script.exists() else [shutil.which("curvscope")]
    return subprocess.run([*command, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_an_empty_spec_file_is_refused_instead_of_starting_the_long_default(tmp_path):
    empty = tmp_path / "empty.toml"
    empty.write_text("# nothing yet\n")
    done = _curvscope("submit", str(empty), "--url", "http://127.0.0.1:9")
    assert done.returncode == 2
    assert "is empty: it would start the default study" in done.stderr
    assert 'preset = "quick"' in done.stderr
    assert "Traceback" not in done.stderr


def test_messages_keep_their_square_brackets():
    from rich.markup import escape

    from curvscope.cli import err

    hint = 'pip install -e ".[service]"'
    with err.capture() as captured:
        err.print(f"[red]error:[/] {escape(hint)}", highlight=False)
    assert '".[service]"' in captured.get()


def test_a_bad_eigensolver_override_is_refused_before_any_stage_runs(tmp_path):
    import os

    out = tmp_path / "run"
    env = os.environ | {"CURVSCOPE_EIGH_BACKEND": "lapack"}
    script = Path(sys.executable).with_name("curvscope")
    command = [str(script)] if script.exists() else [shutil.which("curvscope")]
    done = subprocess.run([*command, "run", "--preset", "quick", "--out", str(out),
                           "--no-cache"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert "CURVSCOPE_EIGH_BACKEND='lapack' is not a backend; allowed: torch, scipy" in \
        done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


def test_an_unknown_option_is_a_usage_message_not_a_traceback():
    """typer ≥ 0.2x raises its vendored copy of click's errors; they are shown as click's
    usage message with its exit code 2, as click's own are."""
    done = _curvscope("submit", "examples/quick.toml", "--wait",
                      cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 2, done.stderr
    assert "No such option" in done.stderr and "--wait" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
