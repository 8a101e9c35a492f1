"""The ``hpo`` entry point: every verb is listed, and one verb's run imports only its own stack."""

from __future__ import annotations

import argparse
import ast
import contextlib
import gc
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import hpo.cli
import hpo.data
from hpo import interrupts
from hpo.cli import VERBS, build_parser, console, main
from hpo.interrupts import Terminated, on_signal
from tests.support.cli import Launcher

REPO = Path(__file__).resolve().parents[1]


def test_the_full_parser_lists_every_verb() -> None:
    text = build_parser().format_help()
    for verb in VERBS:
        assert verb.replace("_", "-") in text


def imported_after(statements: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has imported after running ``statements``."""
    code = f"import sys; {statements}; print([m for m in {modules!r} if m in sys.modules])"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return ast.literal_eval(done.stdout.strip())


def test_a_verb_alone_does_not_import_the_report_stack() -> None:
    # A --jobs worker is `hpo run --worker I`: it should not pay for pandas and plotly.
    run_only = "from hpo.cli import build_parser; build_parser('run').parse_args(['run'])"
    assert imported_after(run_only, ("pandas", "plotly", "hpo.report")) == []


def test_the_whole_parser_imports_no_torch_and_no_report_stack() -> None:
    # `hpo --help`, `hpo data --help`: torch alone took about 3 s of a 4 s help page.
    whole = "from hpo.cli import build_parser; build_parser().format_help()"
    assert imported_after(whole, ("torch", "pandas", "plotly", "matplotlib")) == []
    # The verbs that never open a storage do not pay for Optuna's and SQLAlchemy's imports.
    for verb in ("data", "baseline", "bench_report"):
        alone = f"from hpo.cli import build_parser; build_parser({verb!r}).format_help()"
        assert imported_after(alone, ("optuna", "sqlalchemy")) == [], verb


def test_the_run_modules_import_neither_torchvision_nor_tensorboard() -> None:
    # A --jobs parent imports these modules and trains nothing: torchvision would pull in
    # torch._dynamo (about 1 s). TensorBoard is imported when a trial writes its events.
    parent = "import hpo.cli.run, hpo.tuning, hpo.search, hpo.study_setup, hpo.finalize, hpo.train"
    assert imported_after(parent, ("torchvision", "torch.utils.tensorboard")) == []


def test_the_command_exits_with_mains_code_and_skips_the_final_collection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hpo.cli, "main", lambda: 3)
    held = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as stop:
            console()
        assert stop.value.code == 3
        assert gc.get_freeze_count() > 0  # the heap is left to the OS, not collected
        # Both stops go through the handler that remembers them (hpo.interrupts).
        assert signal.getsignal(signal.SIGINT) is signal.getsignal(signal.SIGTERM) is on_signal
    finally:
        gc.unfreeze()
        for sig, handler in held.items():  # this process is pytest's: its Ctrl-C is its own
            signal.signal(sig, handler)


def test_an_unknown_verb_is_a_usage_error_listing_the_verbs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["tune"])
    assert exc.value.code == 2
    assert "bench-report" in capsys.readouterr().err


def test_hpo_without_a_verb_prints_its_help_to_stderr_and_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A usage error, as Optuna's CLI has it: a script that ran `hpo` alone did nothing, and
    # exit 0 would tell it that all went well.
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("usage: hpo [-h]") and "bench-report" in err


def test_an_hpo_device_of_only_blanks_is_taken_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    # A variable exported empty or as spaces (HPO_DEVICE=" " in a job file) means no choice:
    # auto, and no "$HPO_DEVICE" named in the errors, rather than "unknown device ''".
    args = argparse.Namespace(device=None)
    monkeypatch.setenv("HPO_DEVICE", "  ")
    assert hpo.cli.device_default(args) is None and args.device == "auto"
    monkeypatch.setenv("HPO_DEVICE", " CPU ")
    args.device = None
    assert hpo.cli.device_default(args) == "$HPO_DEVICE=CPU" and args.device == "cpu"


def test_a_device_from_hpo_device_is_named_in_its_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("HPO_DEVICE", "gpu")
    assert main(["baseline", "--epochs", "1", "--out", str(tmp_path)]) == 2
    assert "$HPO_DEVICE: unknown device 'gpu'" in capsys.readouterr().err
    monkeypatch.setenv("HPO_DEVICE", "cuda:7")  # no machine here has eight GPUs
    assert main(["baseline", "--epochs", "1", "--out", str(tmp_path)]) == 1
    assert "(the device came from $HPO_DEVICE=cuda:7: unset it)" in capsys.readouterr().err
    # A flag wins over the variable, and its error is the flag's alone.
    assert main(["baseline", "--epochs", "1", "--device", "cuda:7", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "--device cuda:7 was asked for" in err and "HPO_DEVICE" not in err


@pytest.mark.parametrize("verb", ["run", "data"])
def test_an_unknown_flag_after_a_verb_is_that_verbs_usage_error(
    verb: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main([verb, "--sampler", "tpe"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: hpo {verb} [-h]")  # the verb's flags, not `hpo <verb> ...`
    assert f"hpo {verb}: error: unrecognized arguments: --sampler tpe" in err


def verb_parser(verb: str) -> argparse.ArgumentParser:
    (verbs,) = (a for a in build_parser(verb)._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = verbs.choices[verb]
    return parser


@pytest.mark.parametrize("verb", ["run", "report"])
def test_help_fills_a_paragraph_to_the_terminal_and_keeps_laid_out_text(
    verb: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    with pytest.raises(SystemExit) as exc:
        main([verb, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    parser = verb_parser(verb)
    assert parser.description and parser.epilog
    laid_out = [
        line
        for part in (parser.description, parser.epilog)
        if "\n" in part.strip("\n")
        for line in part.strip("\n").splitlines()
    ]
    lines = text.splitlines()
    for line in laid_out:  # examples and docstrings keep their lines, however long
        assert line in lines
    assert all(len(line) <= 60 for line in lines if line not in laid_out)
    assert " ".join(parser.description.split()) in " ".join(text.split())


@pytest.mark.parametrize("stop", [KeyboardInterrupt, Terminated])
def test_a_stop_while_the_command_loads_is_an_interrupt_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], stop: type
) -> None:
    # Building a verb's parser imports its stack (Optuna, SQLAlchemy): tenths of a second.
    def stopped_while_importing(only: str | None = None) -> argparse.ArgumentParser:
        raise stop

    monkeypatch.setattr(hpo.cli, "build_parser", stopped_while_importing)
    code = main(["run", "--trials", "3"])
    err = capsys.readouterr().err
    assert code == (143 if stop is Terminated else 130)
    assert err.strip().endswith("nothing was changed. Rerun the same command"), err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_python_wrapped_in_another_error_is_still_a_stop(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    signum: signal.Signals,
) -> None:
    """Python wraps an exception raised inside ``__set_name__`` in a RuntimeError: a Ctrl-C in
    the middle of importing matplotlib (``hpo baseline``) came out as a traceback, exit 1."""

    def stopped_inside_an_import(*_a: object, **_k: object) -> None:
        try:
            interrupts.stop(signum)
        except KeyboardInterrupt as exc:
            raise RuntimeError("Error calling __set_name__ on '_api.classproperty'") from exc

    monkeypatch.setattr(hpo.data, "ensure_mnist", stopped_inside_an_import)
    code = main(["data", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == (143 if signum == signal.SIGTERM else 130), err
    assert "files already verified are kept" in err and "RuntimeError" not in err

    # An error of its own while the stop is under way is a stop too, and said on one line.
    def failed_while_stopping(*_a: object, **_k: object) -> None:
        with contextlib.suppress(KeyboardInterrupt):  # caught by a cleanup, which then failed
            interrupts.stop(signum)
        raise OSError("disk full while queueing the trial again")

    monkeypatch.setattr(hpo.data, "ensure_mnist", failed_while_stopping)
    code = main(["data", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == (143 if signum == signal.SIGTERM else 130), err
    assert "while stopping: OSError: disk full while queueing the trial again" in err

    # A genuine RuntimeError is still one (its traceback is for a bug report).
    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(hpo.data, "ensure_mnist", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["data", "--data-dir", str(tmp_path)])


def test_a_stop_under_an_error_raised_while_handling_it_is_found_with_nothing_pending() -> None:
    """A KeyboardInterrupt that no handler of hpo's remembered (Python's own, before main
    installs one), then a cleanup that failed while handling it: the error's implicit context
    holds the stop, so it is a stop (exit 130), not a traceback of the cleanup's error."""
    interrupts.taken()  # nothing pending: only the chain can tell
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise OSError("disk full while queueing the trial again")  # noqa: B904
    except OSError as exc:
        assert interrupts.stop_behind(exc) is exc.__context__
    assert interrupts.stop_behind(OSError("a genuine error")) is None


def test_a_stop_raised_again_is_raised_once_and_a_later_error_is_an_error() -> None:
    """raise_pending raises a dropped stop again, once: pending still, it would stop the
    --jobs parent's next wait as well, and make a genuine error raised afterwards (the
    database gone) a stop in main's eyes (exit 143, not the error's message)."""
    interrupts.taken()
    with contextlib.suppress(Terminated):
        interrupts.stop(signal.SIGTERM)  # the handler's raise, dropped by Python
    with pytest.raises(Terminated):
        interrupts.raise_pending()
    interrupts.raise_pending()  # nothing pending now: no raise
    assert interrupts.stop_behind(OSError("the database went away")) is None


# A sitecustomize for the processes below: the import of $HPO_TEST_STALL_AT says so on stdout
# and waits there, so that a signal provably lands inside an import, however slow the machine.
STALL_HOOK = """\
import os, sys, time
class _Stall:
    def find_spec(self, name, path=None, target=None):
        if name == os.environ["HPO_TEST_STALL_AT"]:
            sys.meta_path.remove(self)
            os.write(1, b"importing\\n")
            time.sleep(300)
        return None
sys.meta_path.insert(0, _Stall())
"""
# The console script pip writes for ``hpo = "hpo.cli:console"``.
CONSOLE_SCRIPT = """\
import sys
from hpo.cli import console
sys.exit(console())
"""


def _launcher(cwd: Path, *first: Path, **env: str) -> Launcher:
    """Processes in ``cwd`` that import this checkout's hpo, after what ``first`` holds."""
    path = os.pathsep.join([*map(str, first), str(REPO), os.environ.get("PYTHONPATH", "")])
    return Launcher(cwd=cwd, data_dir=cwd, env={**os.environ, "PYTHONPATH": path, **env})


@pytest.mark.parametrize(
    ("entry", "stall_at", "sig"),
    [
        # hpo.cli's own imports, before main can catch anything (hpo.cli.loading's handlers).
        ("-m", "hpo.cli.common", signal.SIGINT),
        ("-m", "hpo.cli.common", signal.SIGTERM),
        ("script", "hpo.cli.common", signal.SIGINT),
        ("script", "hpo.cli.common", signal.SIGTERM),
        # The verb's imports while main builds the parser (hpo.interrupts', caught by main).
        ("-m", "hpo.cli.run", signal.SIGINT),
        ("script", "hpo.cli.run", signal.SIGTERM),
    ],
)
def test_a_stop_while_hpo_imports_says_one_line_and_exits_as_the_signal_asks(
    tmp_path: Path, entry: str, stall_at: str, sig: signal.Signals
) -> None:
    (tmp_path / "sitecustomize.py").write_text(STALL_HOOK)
    (tmp_path / "hpo").write_text(CONSOLE_SCRIPT)
    launcher = _launcher(tmp_path, tmp_path, HPO_TEST_STALL_AT=stall_at)
    start = ["-m", "hpo.cli"] if entry == "-m" else [str(tmp_path / "hpo")]
    proc = launcher.popen([sys.executable, *start, "run", "--help"])
    try:
        assert proc.stdout is not None
        # No time limit of its own: a loaded machine may take long to get here.
        assert proc.stdout.readline() == "importing\n", proc.communicate()[1]
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    said = "terminated (SIGTERM)" if sig == signal.SIGTERM else "interrupted"
    # One line, the same whichever handler took the stop; no traceback.
    line = f"hpo: error: {said} while starting; nothing was changed. Rerun the same command"
    assert err == f"{line}\n"
    assert proc.returncode == 128 + sig


def test_a_program_that_imports_hpo_cli_keeps_its_own_ctrl_c(tmp_path: Path) -> None:
    # Only the hpo command is given the starting handlers: a test run's Ctrl-C stays its own.
    code = (
        "import signal, hpo.cli; "
        "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, "
        "signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)"
    )
    proc = _launcher(tmp_path).popen([sys.executable, "-c", code])
    out, err = proc.communicate(timeout=120)
    assert out.split() == ["True", "True"], err
