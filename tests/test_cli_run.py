"""``hpo run`` / ``hpo finalize`` from the command line: exit codes, messages, the JSON summary,
and resuming after SIGKILL (a real subprocess, killed mid-trial, run again)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import optuna
import pytest
import torch
from optuna.storages import RDBStorage
from optuna.trial import TrialState

import hpo.aot_step
import hpo.data
import hpo.device
import hpo.search
import hpo.storage
import hpo.storage_url
import hpo.study_setup
import hpo.tb
import hpo.tuning
import hpo.workers
from hpo.cli import main
from hpo.cli.summary import format_summary
from hpo.data import raw_dir
from hpo.records import Final, FinalSide
from hpo.storage import CONNECT_TIMEOUT_S, open_storage
from hpo.storage_url import (
    DEFAULT_STORAGE,
    dashboard_command,
    hpo_command,
    mask_text,
    sqlite_path,
    with_driver,
)
from hpo.study_summary import StudySummary, TrialBrief, summarize
from hpo.trial import UNFINISHED
from tests.support.cli import USER_ATTRS, Launcher, make_launcher, signal_mid_trial, write_spec
from tests.support.synthetic import file_digests, make_synthetic_mnist

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Mnist.load holds out 10,000 validation images, so 16,000 leaves 6,000 to train on.
    root = tmp_path_factory.mktemp("mnist")
    make_synthetic_mnist(root, 16_000, 200, seed=0)
    return root


@pytest.fixture()
def synthetic(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # runs/<study>/tensorboard is written under the current dir
    for name, digest in file_digests(raw_dir(data_dir)).items():
        monkeypatch.setitem(hpo.data.MNIST_FILES, name, digest)
    return data_dir


def hpo_run(tmp: Path, data: Path, *extra: str) -> int:
    return main(
        [
            "run",
            "--spec",
            str(write_spec(tmp / "tiny.toml", trials=3)),
            "--storage",
            f"sqlite:///{tmp}/hpo.db",
            "--data-dir",
            str(data),
            "--device",
            "cpu",
            "--no-compile",
            *extra,
        ]
    )


def test_trials_zero_or_negative_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    for n in ("0", "-3"):
        assert main(["run", "--trials", n]) == 2
        assert f"--trials must be >= 1 (got {n})" in capsys.readouterr().err
    for t in ("0", "-1", "nan", "inf"):  # nan read as "no timeout"
        assert main(["run", "--timeout", t]) == 2
        assert "--timeout must be a number of seconds > 0" in capsys.readouterr().err


def test_heartbeat_or_jobs_below_one_is_a_usage_error_and_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # --heartbeat 0 was read as "the study's" (0 is falsy) and --jobs 0 as a traceback from
    # the worker plan: each is the user's typo, said as such before anything starts.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hpo.tuning, "tune", lambda *_a, **_k: pytest.fail("the run started"))
    for flag, n in (("--heartbeat", "0"), ("--heartbeat", "-5"), ("--jobs", "0")):
        assert main(["run", flag, n]) == 2
        assert f"{flag} must be >= 1" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("password", ["secret", "e"])  # "e": in most words of the message
def test_unreachable_storage_exits_1_with_the_password_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], password: str
) -> None:
    url = f"postgresql://u:{password}@127.0.0.1:1/x"
    code = main(
        ["run", "--spec", str(write_spec(tmp_path / "tiny.toml", trials=3)), "--storage", url]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "cannot open storage postgresql://u:***@127.0.0.1:1/x" in err
    assert "secret" not in err and "Traceback" not in err
    # Only the URL's password is masked: the driver's words stay readable.
    assert err.count("***") == 1 and "Connection refused" in err
    assert "that the database server is up and reachable" in err and "sqlalche.me" not in err


def test_a_password_in_the_urls_query_is_masked_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql://nobody@127.0.0.1:1/x?sslmode=disable&Password=top%40secret"
    spec = str(write_spec(tmp_path / "tiny.toml", trials=3))
    for argv in (["run", "--spec", spec], ["report"], ["finalize"]):
        assert main([*argv, "--storage", url]) == 1
        err = capsys.readouterr().err
        assert "cannot open storage" in err and "Password=***" in err, err
        assert "secret" not in err
    assert "secret" not in dashboard_command(url)
    slashed = "postgresql://u:top/secret@127.0.0.1:1/x"  # SQLAlchemy: password "top/secret"
    assert main(["run", "--spec", spec, "--storage", slashed]) == 1
    err = capsys.readouterr().err
    assert "postgresql://u:***@127.0.0.1:1/x" in err and "secret" not in err, err


def test_a_password_with_an_unescaped_at_is_refused_and_none_of_it_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # SQLAlchemy reads password "pa" and host "ss@127.0.0.1": the driver's error showed "ss".
    spec = str(write_spec(tmp_path / "tiny.toml", trials=3))
    for verb in (["run", "--spec", spec], ["report"], ["finalize"]):
        assert main([*verb, "--storage", "postgresql://hpo:pa@ss@127.0.0.1:1/hpo"]) == 1
        err = capsys.readouterr().err
        assert "storage postgresql://hpo:***@127.0.0.1:1/hpo: its password contains @" in err
        assert "Fix: write each @ in it as %40" in err and "ss@" not in err and ":pa" not in err
    # An @ in the user name (Azure's user@server) is SQLAlchemy's to read: not refused.
    assert main(["report", "--storage", "postgresql://user@server:pw@127.0.0.1:1/db"]) == 1
    err = capsys.readouterr().err
    assert "cannot open storage postgresql://user@server:***@127.0.0.1:1/db" in err
    assert "contains @" not in err


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("bogus://x", "Unknown database kind 'bogus': use sqlite:///FILE"),
        ("mysql://u:pw@127.0.0.1/x", "The mysql driver is not installed"),
        # A driver the URL names, not the one hpo's postgres extra installs (psycopg 3).
        (
            "postgresql+pg8000://u:pw@127.0.0.1:1/x",
            "postgresql+pg8000:// needs the Python module pg8000, which is not installed: pip "
            "install pg8000, or write postgresql:// for psycopg 3",
        ),
        # in memory: no resume, no workers, no dashboard (it hung on Optuna's thread check)
        ("sqlite:///", "is an in-memory SQLite database"),
        ("sqlite://", "name a file instead, e.g. sqlite:///runs/hpo.db"),
        ("sqlite:///:memory:", "is an in-memory SQLite database"),
    ],
)
def test_a_storage_url_hpo_cannot_open_says_what_to_do_for_its_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, said: str
) -> None:
    if "pg8000" in url and importlib.util.find_spec("pg8000"):
        pytest.skip("pg8000 is installed here")
    spec = str(write_spec(tmp_path / "tiny.toml", trials=3))
    assert main(["run", "--spec", spec, "--storage", url]) == 1
    err = capsys.readouterr().err
    assert said in err and "hpo[postgres]" not in err and ":pw@" not in err


def test_a_bad_storage_from_the_environment_is_said_to_come_from_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPO_STORAGE", "runs/hpo.db")  # a path, not a URL
    for verb in (["report"], ["finalize"]):
        assert main(verb) == 1
        err = capsys.readouterr().err
        assert "storage 'runs/hpo.db' is not a database URL" in err
        assert err.rstrip().endswith("(the storage came from $HPO_STORAGE)"), err
    # Another named by --storage: no word of the variable.
    assert main(["report", "--storage", "other.db"]) == 1
    assert "HPO_STORAGE" not in capsys.readouterr().err


def test_a_sqlite_path_under_missing_folders_is_refused_and_creates_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = str(write_spec(tmp_path / "tiny.toml", trials=3))
    typo = tmp_path / "tpyo" / "deeper" / "hpo.db"
    assert main(["run", "--spec", spec, "--storage", f"sqlite:///{typo}"]) == 1
    err = capsys.readouterr().err
    assert f"the folder {tmp_path / 'tpyo'} does not exist" in err and "mkdir -p" in err
    assert not (tmp_path / "tpyo").exists()
    # The database's own folder is still made: runs/ in a fresh checkout.
    open_storage(f"sqlite:///{tmp_path / 'runs' / 'hpo.db'}")
    assert (tmp_path / "runs" / "hpo.db").is_file()
    # A folder given for the file: said so (SQLite's "unable to open database file" was all).
    assert main(["run", "--spec", spec, "--storage", f"sqlite:///{tmp_path / 'runs'}"]) == 1
    said = f"{tmp_path / 'runs'} is a folder, not a database file; name a file in it, e.g. "
    assert said in capsys.readouterr().err


def test_the_file_a_sqlite_url_names_in_its_plain_and_uri_forms() -> None:
    assert sqlite_path("sqlite:///runs/hpo.db?timeout=30") == Path("runs/hpo.db")
    assert sqlite_path("sqlite:////tmp/a.db") == Path("/tmp/a.db")
    assert sqlite_path("sqlite:///file:/tmp/a.db?mode=ro&uri=true") == Path("/tmp/a.db")
    assert sqlite_path("sqlite:///file:a.db") == Path("file:a.db")  # no uri=true: a file name
    for memory in ("sqlite://", "sqlite:///:memory:", "sqlite:///file:a?mode=memory&uri=true"):
        assert sqlite_path(memory) is None
    assert sqlite_path("postgresql://u@h/db") is None


@pytest.mark.parametrize("psycopg3", [True, False])
def test_a_plain_postgresql_url_opens_with_the_psycopg_driver_installed(
    monkeypatch: pytest.MonkeyPatch, psycopg3: bool
) -> None:
    # SQLAlchemy reads postgresql:// as psycopg 3: where only psycopg2 is installed, it (and
    # Heroku's postgres://) is pointed at that; a URL naming its driver is left alone.
    installed = {"psycopg", "psycopg2"} if psycopg3 else {"psycopg2"}  # psycopg 3 first
    monkeypatch.setattr(
        hpo.storage_url.importlib.util,
        "find_spec",
        lambda name: object() if name in installed else None,
    )
    via = "postgresql" if psycopg3 else "postgresql+psycopg2"
    assert with_driver("postgresql://u:pw@db/hpo") == f"{via}://u:pw@db/hpo"
    # postgres:// (Heroku's, libpq's): SQLAlchemy 2 knows no such database, whatever the driver.
    assert with_driver("postgres://u:pw@db/hpo") == f"{via}://u:pw@db/hpo"
    for kept in ("postgresql+pg8000://u@db/hpo", "sqlite:///runs/hpo.db", "postgresql"):
        assert with_driver(kept) == kept


def test_a_connect_timeout_in_the_url_is_the_one_a_postgresql_connect_waits() -> None:
    # hpo's 10 s bound on a dead server applies unless the URL sets its own, which it keeps.
    assert hpo.storage._engine_kwargs("postgresql://u@db/hpo") == {
        "pool_pre_ping": True,
        "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S},
    }
    assert hpo.storage._engine_kwargs("postgresql://u@db/hpo?connect_timeout=60") == {
        "pool_pre_ping": True
    }


def test_a_read_only_database_is_said_to_be_read_only_not_lost_and_is_left_as_it_was(
    tmp_path: Path, synthetic: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert hpo_run(tmp_path, synthetic, "--study", "r", "--trials", "2", "--no-finalize") == 0
    db = tmp_path / "hpo.db"
    before = db.read_bytes()
    # Read-only as SQLite opens it (a chmod does not stop root, which CI runs as).
    read_only = f"sqlite:///file:{db}?mode=ro&uri=true"
    args = ["run", "--spec", str(tmp_path / "tiny.toml"), "--storage", read_only, "--study", "r"]
    capsys.readouterr()
    assert main([*args, "--data-dir", str(synthetic), "--trials", "3", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert f"cannot write to the storage {read_only}: it is read-only (" in err
    assert "attempt to write a readonly database" in err and "Make it writable" in err
    assert "lost the storage" not in err and "When the database is back" not in err
    assert db.read_bytes() == before


def test_the_dashboard_command_printed_can_be_pasted_without_showing_a_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "postgresql://hpo:s3cret@db/hpo"
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    assert dashboard_command("sqlite:///runs/hpo.db") == "optuna-dashboard sqlite:///runs/hpo.db"
    told = dashboard_command(url)
    assert told == (
        "optuna-dashboard postgresql://hpo:PASSWORD@db/hpo  (with your password for PASSWORD)"
    )
    # The password anywhere SQLAlchemy reads one; a placeholder that quotes itself in a shell.
    slashed = dashboard_command("postgresql://hpo:top/secret@db/hpo")
    assert "secret" not in slashed and "hpo:PASSWORD@db" in slashed
    monkeypatch.setenv("HPO_STORAGE", url)
    assert dashboard_command(url) == 'optuna-dashboard "$HPO_STORAGE"'


def test_a_hinted_command_names_a_storage_other_than_the_default_and_pastes_into_a_shell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    hint = hpo_command("finalize", study="a b;c $(x)", storage="sqlite:////tmp/sp ace/h.db")
    assert shlex.split(hint) == [
        "hpo", "finalize", "--study", "a b;c $(x)", "--storage", "sqlite:////tmp/sp ace/h.db"
    ]  # fmt: skip
    assert hpo_command("report", "--confirm", "5", study=None, storage=DEFAULT_STORAGE) == (
        "hpo report --confirm 5"
    )
    # The storage $HPO_STORAGE names is the default one: the hint leaves it to the variable,
    # also where hpo opened it through the only driver installed (psycopg2).
    monkeypatch.setenv("HPO_STORAGE", "postgresql://hpo:secret@db/hpo")
    assert hpo_command("finalize", study="s", storage="postgresql://hpo:***@db/hpo") == (
        "hpo finalize --study s"
    )
    monkeypatch.setattr(
        hpo.storage_url,
        "with_driver",
        lambda u: u.replace("postgresql://", "postgresql+psycopg2://"),
    )
    opened = "postgresql+psycopg2://hpo:***@db/hpo"  # its RDBStorage.url, masked
    assert hpo_command("finalize", study="s", storage=opened) == "hpo finalize --study s"


def test_a_hinted_command_names_a_password_by_a_placeholder_not_asterisks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    # *** pasted fails to log in; PASSWORD says what to put there. The password never shows.
    for given in ("postgresql://hpo:s3cret@db/hpo", "postgresql://hpo:***@db/hpo"):
        hint = hpo_command("finalize", study="s", storage=given)
        assert shlex.split(hint)[-2:] == ["--storage", "postgresql://hpo:PASSWORD@db/hpo"]
    query = "postgresql://hpo@db/hpo?sslmode=require&password=s3cret"
    assert shlex.split(hpo_command("report", study=None, storage=query)) == [
        "hpo", "report", "--storage", "postgresql://hpo@db/hpo?sslmode=require&password=PASSWORD"
    ]  # fmt: skip


def test_a_password_in_a_driver_message_is_masked_where_it_stands_for_one() -> None:
    url = "postgresql://u:p%40ss@h/x"  # "p@ss", percent-encoded in the URL
    text = "at postgresql://u:p%40ss@h/x,\n dsn password='p@ss' host=h; password=p%40ss"
    assert mask_text(text, url) == (
        "at postgresql://u:***@h/x, dsn password='***' host=h; password=***"
    )


def test_a_malformed_spec_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[sampler]\nname = "bayes"\n[space]\nlr = { low = 0.1, high = 0.01 }\n')
    assert main(["run", "--spec", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "sampler.name: 'bayes' is not one of" in err and "space.lr: empty or inverted" in err
    assert main(["run", "--spec", str(tmp_path / "absent.toml")]) == 2
    assert "absent.toml not found" in capsys.readouterr().err
    assert main(["run", "--spec", str(tmp_path)]) == 2
    assert "is a folder, not a spec file (TOML files there: bad.toml)" in capsys.readouterr().err


def test_a_bad_device_or_study_name_is_a_usage_error_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = str(write_spec(tmp_path / "tiny.toml", trials=3))
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--spec", spec, "--device", "tpu"])
    assert exit_.value.code == 2
    assert "unknown device 'tpu': use auto, cpu, cuda, cuda:N or mps" in capsys.readouterr().err
    (tmp_path / "tensorboard").mkdir()  # the user's own, which --study .. once moved aside
    for verb in (["run", "--spec", spec], ["report"], ["finalize"]):
        for name, said in (
            ("", "must not be empty"),
            ("..", "cannot contain /"),
            ("a/b", "/"),
            ("a\nb", "a control character"),
            ("a\x7fb", "a control character"),  # DEL, though above 31
            ("x" * 201, "a study name of 201 bytes is too long"),
            ("é" * 101, "202 bytes"),  # bytes, as the file system counts
        ):
            with pytest.raises(SystemExit) as exit_:
                main([*verb, "--study", name])
            assert exit_.value.code == 2 and said in capsys.readouterr().err
    (odd := tmp_path / "...toml").write_text(Path(spec).read_text())  # its stem is ".."
    assert main(["run", "--spec", str(odd)]) == 2
    assert f"the study's name, the stem of {odd}: " in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["...toml", "tensorboard", "tiny.toml"]
    if not torch.cuda.is_available():  # an absent GPU: refused before the storage is opened
        assert main(["run", "--spec", spec, "--device", "cuda"]) == 1
        assert "no CUDA GPU is visible here; use --device cpu" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_run_prints_a_json_summary_with_the_finalized_test_accuracy(
    tmp_path: Path,
    synthetic: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hpo.device, "native_bf16", lambda device: True)  # as on this CI's CPU
    flags = ("--format", "json", "--study", "j", "--precision", "auto")
    assert hpo_run(tmp_path, synthetic, *flags) == 0
    out, err = capsys.readouterr()
    assert "precision: auto -> bf16 on cpu" in err
    summary = json.loads(out)  # stdout holds only the result
    assert summary["study_name"] == "j" and summary["complete"] == 3
    assert summary["epochs_run"] == summary["epochs_without_pruning"] == 6
    assert summary["baseline"]["number"] == 0
    assert summary["final"]["baseline"]["trial"] == 0
    assert 0.0 <= summary["final"]["best"]["test_acc"] <= 1.0
    assert f"optuna-dashboard sqlite:///{tmp_path}/hpo.db" in err
    assert "trial 2 complete" in err  # the progress line, one per trial when not a terminal
    events = sorted(p.name for p in (tmp_path / "runs" / "j" / "tensorboard").glob("trial-*"))
    assert events == ["trial-0000", "trial-0001", "trial-0002"]
    study = optuna.load_study(study_name="j", storage=f"sqlite:///{tmp_path}/hpo.db")
    assert study.user_attrs["final"] == summary["final"]
    assert summary["final"]["best"]["model"] == "runs/j/best.pt"
    assert {"spec", "spec_hash", "seed", "sampler", "pruner", "epochs", "hpo_version"} <= set(
        study.user_attrs
    )
    # "auto" is the study's setting; each trial, and its retraining, records what it trained in
    assert study.user_attrs["precision"] == "auto"
    assert {t.user_attrs["config"]["precision"] for t in study.trials} == {"bf16"}
    assert summary["final"]["best"]["config"]["precision"] == "bf16"
    # `hpo finalize` on the existing study retrains and prints the table
    assert (
        main(
            [
                "finalize",
                "--study",
                "j",
                "--storage",
                f"sqlite:///{tmp_path}/hpo.db",
                "--data-dir",
                str(synthetic),
                "--device",
                "cpu",
                "--no-compile",
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "baseline (#0)" in table and "3 finished of 3" in table
    # Both models exported where the table says (relative to the current dir: tmp_path here).
    exported = "models    runs/j/best.pt (best), runs/j/baseline.pt (baseline): "
    assert exported + "hpo.retrain.load_model(path)" in table
    assert (tmp_path / "runs" / "j" / "best.pt").is_file()
    # `hpo report` says where they are too.
    report = ["report", "--study", "j", "--storage", f"sqlite:///{tmp_path}/hpo.db"]
    assert main([*report, "--no-pictures"]) == 0
    assert (
        "models: runs/j/best.pt (best), runs/j/baseline.pt (baseline): " in capsys.readouterr().out
    )
    # Another machine sharing the study has no such files: the table names none there.
    for role in ("best", "baseline"):
        (tmp_path / "runs" / "j" / f"{role}.pt").unlink()
    storage = open_storage(f"sqlite:///{tmp_path}/hpo.db")
    elsewhere = format_summary(summarize(study, storage, 3), "table")
    assert "baseline (#0)" in elsewhere and "best.pt (best)" not in elsewhere
    finalize = f"hpo finalize --study j --storage sqlite:///{tmp_path}/hpo.db"
    assert f"models    none on this machine: `{finalize}` trains and writes" in elsewhere


def test_the_summary_table_gives_test_scores_and_models_only_for_the_trials_finalize_measured(
    tmp_path: Path,
) -> None:
    """Built by hand, so every line is checked without a run: finalize measured an earlier best
    (#3), whose score and model are not the present best's (#5); a model file recorded but not
    on this machine is not offered; a running trial and an early stop are said."""
    old_best = tmp_path / "old-best.pt"
    old_best.write_bytes(b"a model of trial 3")
    baseline_pt = tmp_path / "baseline.pt"  # recorded, not written yet
    final: Final = {
        "best": cast(FinalSide, {"trial": 3, "test_acc": 0.97, "seconds_per_epoch": 1.5,
                                 "model": str(old_best)}),
        "baseline": cast(FinalSide, {"trial": 0, "test_acc": 0.9702, "seconds_per_epoch": 1.25,
                                     "model": str(baseline_pt)}),
        "finalized_at": "2026-01-01T13:00:00+00:00",
    }  # fmt: skip
    best = TrialBrief(5, 0.98, 0.9812, {"lr": 0.05, "hidden1": 512}, {})
    baseline = TrialBrief(0, 0.96, 0.9601, {}, {})
    summary = StudySummary(
        "s", "sqlite:///hpo.db", 8, 5, 2, 1, 1, 3, 17, 21, best, baseline, final, "timeout"
    )
    finalize = "hpo finalize --study s --storage sqlite:///hpo.db"
    head = [
        "study     s  (sqlite:///hpo.db)",
        "trials    7 finished of 8: 5 complete, 2 pruned; 1 failed; 1 running",
        "epochs    17 run of 21 without pruning (19% saved; 3 per trial)",
        "stopped   early (timeout); rerun the same command to go on",
        "best      trial 5: lr=0.05  hidden1=512",
        "",
        "                  val acc  test acc  s/epoch",
        "best (#5)          98.12%         -        -",
        "baseline (#0)      96.01%    97.02%     1.25",
        "",
    ]
    assert format_summary(summary, "table").splitlines() == [
        *head,
        f"models    none on this machine: `{finalize}` trains and writes runs/s/best.pt and "
        "baseline.pt",
    ]
    baseline_pt.write_bytes(b"the baseline's model")
    assert format_summary(summary, "table").splitlines() == [
        *head,
        f"models    {baseline_pt} (baseline): hpo.retrain.load_model(path)",
    ]
    # Nothing running, nothing finalized: neither is said, and the command to finalize is.
    unfinalized = dataclasses.replace(summary, running=0, final=None, stopped_early="")
    assert format_summary(unfinalized, "table").splitlines() == [
        head[0],
        "trials    7 finished of 8: 5 complete, 2 pruned; 1 failed",
        head[2],
        *head[4:8],
        "baseline (#0)      96.01%         -        -",
        f"(test accuracy: not finalized; run `{finalize}`)",
    ]


def test_a_val_loss_study_minimises_and_its_summary_names_the_lowest_loss_as_best(
    tmp_path: Path, synthetic: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path / "loss.toml", trials=3, objective="val_loss")
    url = f"sqlite:///{tmp_path}/hpo.db"
    argv = ["run", "--spec", str(spec), "--storage", url, "--study", "l", "--format", "json",
            "--data-dir", str(synthetic), "--device", "cpu", "--no-compile"]  # fmt: skip
    assert main(argv) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    study = optuna.load_study(study_name="l", storage=url)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert study.user_attrs["objective"] == "val_loss"
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3
    for t in complete:  # each trial's value is its last validation loss, not its accuracy
        curves = t.user_attrs["curves"]
        assert t.value == curves["val_loss"][-1] != curves["val_acc"][-1]
        assert f"trial {t.number} complete: {t.value:.4f}" in err
    lowest = min(complete, key=lambda t: t.value or 0.0)
    highest = max(complete, key=lambda t: t.value or 0.0)
    assert lowest.number != highest.number  # the wrong end of the scale names another trial
    best = summary["best"]
    assert (best["number"], best["value"]) == (lowest.number, lowest.value)
    assert best["val_acc"] == lowest.user_attrs["curves"]["val_acc"][-1]
    assert summary["final"]["best"]["trial"] == lowest.number
    assert summary["baseline"]["value"] == study.trials[0].value


def test_finalize_and_the_report_measure_the_study_against_the_last_runs_trials(
    tmp_path: Path, synthetic: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The spec says 3; the run asks for 2: "2 finished of 2", not "of 3", everywhere after.
    assert hpo_run(tmp_path, synthetic, "--study", "t", "--trials", "2", "--no-finalize") == 0
    url = f"sqlite:///{tmp_path}/hpo.db"
    capsys.readouterr()
    flags = ["--study", "t", "--storage", url, "--data-dir", str(synthetic), "--device", "cpu"]
    assert main(["finalize", *flags, "--no-compile", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["target"] == 2
    out = tmp_path / "r.html"
    assert main(["report", *flags, "--no-pictures", "--format", "json", "--out", str(out)]) == 0
    assert "(target: 2)" in out.read_text()
    # A run asking for fewer than are finished has nothing to do, and leaves the target alone.
    assert hpo_run(tmp_path, synthetic, "--study", "t", "--trials", "1", "--no-finalize") == 0
    assert optuna.load_study(study_name="t", storage=url).user_attrs["trials_target"] == 2


def test_a_new_study_sets_an_earlier_same_named_studys_tensorboard_events_aside(
    tmp_path: Path, synthetic: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two storages, one study name, one runs/ folder: each trial's folder must hold one
    study's events (TensorBoard drew both as one run, two points a step), and none is lost."""
    assert hpo_run(tmp_path, synthetic, "--study", "t", "--trials", "2", "--no-finalize") == 0
    capsys.readouterr()
    other = f"sqlite:///{tmp_path}/other.db"
    flags = ("--study", "t", "--trials", "2", "--no-finalize", "--storage", other)
    assert hpo_run(tmp_path, synthetic, *flags) == 0
    study = tmp_path / "runs" / "t"
    (aside,) = study.glob("tensorboard-*")
    assert f"events of another study named t moved to {aside.relative_to(tmp_path)}" in (
        capsys.readouterr().err
    )
    for folder in (study / "tensorboard", aside):
        for trial in ("trial-0000", "trial-0001"):
            assert len(list((folder / trial).glob("events.out.tfevents.*"))) == 1
    assert hpo_run(tmp_path, synthetic, *flags[:2], "--trials", "3", *flags[4:]) == 0  # resumed
    assert list(study.glob("tensorboard-*")) == [aside]  # its own events stay where they are
    # The first storage's study resumed: the folder holds the other's events, marked as its.
    assert hpo_run(tmp_path, synthetic, "--study", "t", "--trials", "3", "--no-finalize") == 0
    assert "events of another study named t moved to" in capsys.readouterr().err
    assert len(list(study.glob("tensorboard-*"))) == 2
    trials = sorted((study / "tensorboard").glob("trial-*"))
    assert [t.name for t in trials] == ["trial-0002"]  # its trial 2 alone, once
    assert len(list(trials[0].glob("events.out.tfevents.*"))) == 1
    # The same study through another spelling of its storage's URL keeps its events.
    same = f"sqlite:///{tmp_path}/./hpo.db?timeout=30"
    flags = ("--study", "t", "--trials", "4", "--no-finalize", "--storage", same)
    assert hpo_run(tmp_path, synthetic, *flags) == 0
    assert "moved to" not in capsys.readouterr().err and len(list(study.glob("tensorboard-*"))) == 2
    assert (study / "tensorboard" / "trial-0003").is_dir()


def test_unmarked_tensorboard_events_stay_for_a_resumed_study_and_go_aside_for_a_new_one(
    tmp_path: Path, synthetic: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Events without the owner's mark (an hpo from before it wrote one) are the resumed study's
    own: moving them would split its trials' curves; beside a new study they are another's."""
    assert hpo_run(tmp_path, synthetic, "--study", "u", "--trials", "1", "--no-finalize") == 0
    study = tmp_path / "runs" / "u"
    (study / "tensorboard" / hpo.tb.OWNER).unlink()
    capsys.readouterr()
    assert hpo_run(tmp_path, synthetic, "--study", "u", "--trials", "2", "--no-finalize") == 0
    assert "moved to" not in capsys.readouterr().err and not list(study.glob("tensorboard-*"))
    (study / "tensorboard" / hpo.tb.OWNER).unlink()
    other = ("--storage", f"sqlite:///{tmp_path}/other.db")
    assert (
        hpo_run(tmp_path, synthetic, "--study", "u", "--trials", "1", "--no-finalize", *other) == 0
    )
    (aside,) = study.glob("tensorboard-*")
    assert sorted(t.name for t in aside.glob("trial-*")) == ["trial-0000", "trial-0001"]


def test_a_study_with_another_space_is_refused_by_the_cli_and_untouched(
    tmp_path: Path, synthetic: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert hpo_run(tmp_path, synthetic, "--study", "m", "--no-finalize") == 0
    url = f"sqlite:///{tmp_path}/hpo.db"
    before = optuna.load_study(study_name="m", storage=url).trials
    capsys.readouterr()
    spec = write_spec(tmp_path / "tiny.toml", trials=3, hidden1="{ low = 8, high = 32 }")
    code = main(
        [
            "run",
            "--spec",
            str(spec),
            "--storage",
            url,
            "--study",
            "m",
            "--trials",
            "5",
            "--data-dir",
            str(synthetic),
            "--device",
            "cpu",
            "--no-compile",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "search space differs in: hidden1" in err
    assert "precision:" not in err  # the refusal comes before this spec's setup is described
    assert optuna.load_study(study_name="m", storage=url).trials == before


def test_every_run_of_a_study_beats_at_its_heartbeat_and_another_is_refused(
    tmp_path: Path,
    synthetic: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A process takes a trial silent for 3 of its own heartbeats as lost: one beating every
    1 s would fail the live trials of another beating every 5 s."""
    url = f"sqlite:///{tmp_path}/hpo.db"
    beats: list[int | None] = []
    run_study = hpo.search.run_study

    def recording(spec: Any, storage: RDBStorage, *args: Any, **kw: Any) -> Any:
        beats.append(storage.get_heartbeat_interval())
        return run_study(spec, storage, *args, **kw)

    monkeypatch.setattr(hpo.search, "run_study", recording)
    assert hpo_run(tmp_path, synthetic, "--study", "h", "--heartbeat", "2", "--no-finalize") == 0
    study = optuna.load_study(study_name="h", storage=url)
    assert study.user_attrs["heartbeat"] == 2 and beats == [2]
    before = study.trials
    capsys.readouterr()
    assert hpo_run(tmp_path, synthetic, "--study", "h", "--heartbeat", "5", "--trials", "4") == 1
    err = capsys.readouterr().err
    assert "its trials beat every 2 s (set by its first run) and this run's every 5 s" in err
    assert "leave --heartbeat out (a run takes the study's) or pass --heartbeat 2" in err
    assert optuna.load_study(study_name="h", storage=url).trials == before and beats == [2]
    # Without --heartbeat, the study's.
    assert hpo_run(tmp_path, synthetic, "--study", "h", "--trials", "4", "--no-finalize") == 0
    assert beats == [2, 2]
    assert len(optuna.load_study(study_name="h", storage=url).trials) > len(before)
    # With --jobs, its workers too (the race where another machine makes the study while this
    # run starts: test_search's test_a_run_without_heartbeat_takes_that_of_a_study_made_...).
    argvs: list[list[str]] = []
    worker_argv = hpo.tuning.worker_argv

    def recording_argv(*args: Any) -> list[str]:
        argvs.append(worker_argv(*args))
        return argvs[-1]

    monkeypatch.setattr(hpo.tuning, "worker_argv", recording_argv)
    workers = make_launcher(tmp_path / "launch", synthetic, tmp_path).env  # take synthetic data
    for name in ("PYTHONPATH", "HPO_TEST_DIGESTS"):
        monkeypatch.setenv(name, workers[name])
    assert hpo_run(tmp_path, synthetic, "--study", "h", "--trials", "6", "--jobs", "2") == 0
    assert len(argvs) == 2 and all(a[a.index("--heartbeat") + 1] == "2" for a in argvs)


def test_no_compile_over_compiled_trials_says_so_and_builds_no_step_package(
    tmp_path: Path,
    synthetic: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_build(*_args: Any) -> dict[str, str]:
        raise AssertionError("the step package was built for an eager run")

    monkeypatch.setattr(hpo.aot_step, "prepare", no_build)
    assert hpo_run(tmp_path, synthetic, "--study", "e", "--trials", "2", "--no-finalize") == 0
    study = optuna.load_study(study_name="e", storage=f"sqlite:///{tmp_path}/hpo.db")
    done = study.trials[-1]  # as a compiled run on another machine would have stored it
    study.add_trial(optuna.trial.create_trial(
        value=done.value, params=done.params, distributions=done.distributions,
        user_attrs={**done.user_attrs, "compiled": True, "no_compile": False},
    ))  # fmt: skip
    capsys.readouterr()
    assert hpo_run(tmp_path, synthetic, "--study", "e", "--trials", "3", "--no-finalize") == 0
    assert (
        "note: --no-compile trains eagerly, and 1 of the study's trials trained compiled steps"
        in capsys.readouterr().err
    )


def test_jobs_start_no_more_workers_than_trials_left_and_none_when_the_target_is_met(
    tmp_path: Path,
    synthetic: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`--jobs 100` on a finished study started 100 torch processes with nothing to do."""
    assert hpo_run(tmp_path, synthetic, "--study", "j", "--trials", "2", "--no-finalize") == 0
    started: list[list[list[str]]] = []
    monkeypatch.setattr(hpo.workers, "run_parallel", lambda argvs, *_a, **_k: started.append(argvs))
    capsys.readouterr()
    assert hpo_run(tmp_path, synthetic, "--study", "j", "--trials", "2", "--jobs", "4") == 0
    assert started == []
    assert hpo_run(tmp_path, synthetic, "--study", "j", "--trials", "3", "--jobs", "4") == 0
    (argvs,) = started
    assert len(argvs) == 1 and argvs[0][argvs[0].index("--jobs") + 1] == "4"  # its threads
    out, err = capsys.readouterr()
    assert "note: 1 trial(s) left, so 1 of the 4 workers" in err
    # Its worker finished nothing (stubbed): short of the target, but no --timeout stopped it.
    assert "stopped" not in out
    assert hpo_run(tmp_path, synthetic, "--study", "j", "--trials", "3", "--jobs", "4",
                   "--timeout", "60") == 0  # fmt: skip
    assert "stopped   early (timeout); rerun the same command to go on" in capsys.readouterr().out


def test_a_study_resumed_where_auto_means_another_precision_says_its_ranking_mixes_both(
    tmp_path: Path,
    synthetic: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    auto = ["--study", "p", "--precision", "auto", "--no-finalize"]
    monkeypatch.setattr(hpo.device, "native_bf16", lambda _device: True)  # a Zen 4 or Xeon CPU
    assert hpo_run(tmp_path, synthetic, *auto, "--trials", "2") == 0
    assert "ranking mixes" not in capsys.readouterr().err
    assert hpo_run(tmp_path, synthetic, *auto, "--trials", "3") == 0  # the same machine: alike
    assert "ranking mixes" not in capsys.readouterr().err
    monkeypatch.setattr(hpo.device, "native_bf16", lambda _device: False)  # an older CPU
    assert hpo_run(tmp_path, synthetic, *auto, "--trials", "4") == 0
    err = capsys.readouterr().err
    assert (
        "note: precision auto trains in fp32 here, and 3 of the study's trials trained in bf16"
        in err
    )
    trials = optuna.load_study(study_name="p", storage=f"sqlite:///{tmp_path}/hpo.db").trials
    assert [t.user_attrs["config"]["precision"] for t in trials] == ["bf16"] * 3 + ["fp32"]


def test_a_study_trained_with_no_compile_resumed_compiling_says_its_ranking_mixes_both(
    tmp_path: Path,
    synthetic: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert hpo_run(tmp_path, synthetic, "--study", "c", "--trials", "2", "--no-finalize") == 0
    url = f"sqlite:///{tmp_path}/hpo.db"
    trials = optuna.load_study(study_name="c", storage=url).trials
    assert [t.user_attrs["no_compile"] for t in trials] == [True, True]
    capsys.readouterr()
    monkeypatch.setattr(hpo.aot_step, "prepare", lambda *_: {})  # no package: nothing to train
    args = ["run", "--spec", str(write_spec(tmp_path / "tiny.toml", trials=3)), "--study", "c"]
    args += ["--storage", url, "--data-dir", str(synthetic), "--device", "cpu", "--trials", "2"]
    assert main([*args, "--no-finalize"]) == 0  # compiling: the CPU's default
    assert (
        "note: this run compiles its training steps, and 2 of the study's trials trained "
        "eagerly (--no-compile)" in capsys.readouterr().err
    )
    assert main([*args, "--no-finalize", "--no-compile"]) == 0
    assert "trained eagerly" not in capsys.readouterr().err


def test_finalize_of_a_missing_study_names_the_studies_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "none" / "empty.db"
    assert main(["finalize", "--study", "nope", "--storage", f"sqlite:///{db}"]) == 1
    assert "no study storage at" in capsys.readouterr().err
    assert not db.parent.exists()  # not created as a side effect
    optuna.create_study(study_name="other", storage=f"sqlite:///{tmp_path}/hpo.db")
    assert main(["finalize", "--study", "nope", "--storage", f"sqlite:///{tmp_path}/hpo.db"]) == 1
    assert "no study named 'nope'" in (err := capsys.readouterr().err) and "there: other" in err


@pytest.fixture()
def launcher(tmp_path: Path, data_dir: Path) -> Launcher:
    return make_launcher(tmp_path / "launch", data_dir, tmp_path)


def test_sigkill_mid_trial_then_the_same_command_finishes_the_study(
    tmp_path: Path, launcher: Launcher
) -> None:
    # Wide layers on 6,000 images: each epoch takes long enough to be killed in the middle.
    spec = write_spec(tmp_path / "tiny.toml", trials=3, epochs=4, hidden1=512, hidden2=256)
    url = f"sqlite:///{tmp_path}/hpo.db"
    cmd = launcher.run_args(spec, "k", url, 4, "--no-finalize")
    first = launcher.popen(cmd)
    # mid-trial: past trial 0 (the baseline), with at least one epoch reported
    killed = signal_mid_trial(
        first, url, "k", signal.SIGKILL, timeout=180, min_number=1, max_reported=2
    )
    _, stderr = first.communicate(timeout=30)
    assert killed is not None, f"never caught a trial mid-run; stderr:\n{stderr[-2000:]}"
    stuck = optuna.load_study(study_name="k", storage=url).trials[killed]
    assert stuck.state == TrialState.RUNNING  # what SIGKILL leaves behind

    second = launcher.run(cmd)
    assert second.returncode == 0, second.stderr[-3000:]
    # Its process on this machine is gone: lost at once, not after 3 silent heartbeats, and
    # re-run before any new trial is drawn, as a run straight through would have run it.
    assert f"trial(s) #{killed} lost: their process on this machine has ended" in second.stderr
    assert "waiting for running trial" not in second.stderr
    trials = optuna.load_study(study_name="k", storage=url).trials
    states = [t.state for t in trials]
    assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) == 4
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    assert trials[0].user_attrs["is_baseline"] and trials[0].state == TrialState.COMPLETE
    assert trials[killed].state == TrialState.FAIL
    assert trials[killed].user_attrs["reason"] == UNFINISHED
    rerun = [t for t in trials if t.number > killed and t.user_attrs["origin"] == killed]
    assert len(rerun) == 1 and rerun[0].state == TrialState.COMPLETE
    assert rerun[0].number == killed + 1
    assert rerun[0].params == trials[killed].params
    assert rerun[0].user_attrs["seed"] == trials[killed].user_attrs["seed"]
    assert all(set(t.user_attrs) == USER_ATTRS for t in trials)


def test_a_finished_run_leaves_its_sqlite_file_whole(tmp_path: Path, launcher: Launcher) -> None:
    # The command skips Python's final garbage collection (hpo.cli.console), which used to close
    # the storage's connections. They must still be closed, so that SQLite folds its write-ahead
    # log back into the file: a copy of hpo.db alone then holds every trial.
    spec = write_spec(tmp_path / "one.toml", trials=2, epochs=1)
    db = tmp_path / "whole.db"
    done = launcher.run(launcher.run_args(spec, "w", f"sqlite:///{db}", 2, "--no-finalize"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert not Path(f"{db}-wal").exists()
    copy = tmp_path / "copy.db"
    shutil.copyfile(db, copy)
    trials = optuna.load_study(study_name="w", storage=f"sqlite:///{copy}").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2


@pytest.mark.parametrize(
    ("sig", "code", "said"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "SIGTERM")]
)
def test_ctrl_c_or_sigterm_fails_the_running_trial_and_queues_it_again(
    tmp_path: Path, launcher: Launcher, sig: signal.Signals, code: int, said: str
) -> None:
    spec = write_spec(tmp_path / "tiny.toml", trials=3, epochs=4, hidden1=512, hidden2=256)
    url = f"sqlite:///{tmp_path}/hpo.db"
    proc = launcher.popen(launcher.run_args(spec, "c", url, 3, "--no-finalize"))
    sent = signal_mid_trial(proc, url, "c", sig, timeout=120, max_reported=2)
    out, err = proc.communicate(timeout=60)
    assert sent is not None, err[-2000:]
    assert proc.returncode == code and said in err and "Traceback" not in err
    assert "Rerun the same command" in err
    assert out == ""  # no summary for an interrupted run
    trials = optuna.load_study(study_name="c", storage=url).trials
    assert trials[sent].state == TrialState.FAIL
    assert trials[sent].user_attrs["reason"].startswith("interrupted")
    queued = [t for t in trials if t.state == TrialState.WAITING]
    assert len(queued) == 1 and queued[0].user_attrs["origin"] == sent
    assert not [t for t in trials if t.state == TrialState.RUNNING]


@pytest.mark.mnist
@pytest.mark.slow
def test_real_mnist_six_trials_survive_sigkill_and_finalize(tmp_path: Path) -> None:
    """The issue's bar: 6 trials x 3 epochs on real MNIST, SIGKILL mid-run, same command again."""
    url = f"sqlite:///{tmp_path}/hpo.db"
    cmd = [
        sys.executable,
        "-c",
        "import sys; from hpo.cli import main; sys.exit(main(sys.argv[1:]))",
        "run",
        "--trials",
        "6",
        "--epochs",
        "3",
        "--spec",
        str(REPO / "studies" / "mnist_mlp.toml"),
        "--study",
        "bar",
        "--storage",
        url,
        "--heartbeat",
        "2",
        "--format",
        "json",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    killed = signal_mid_trial(
        first, url, "bar", signal.SIGKILL, timeout=600, min_number=2, poll=0.2
    )
    first.wait(timeout=30)
    assert killed is not None, "never caught a trial mid-run"
    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    summary = json.loads(second.stdout)
    trials = optuna.load_study(study_name="bar", storage=url).trials
    states = [t.state for t in trials]
    assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) == 6
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    assert trials[0].user_attrs["is_baseline"] and trials[0].state == TrialState.COMPLETE
    assert trials[0].user_attrs["config"]["head"] == "softmax"  # the tutorial, as written
    assert trials[killed].user_attrs["reason"] == UNFINISHED
    assert summary["complete"] + summary["pruned"] == 6
    assert summary["final"]["baseline"]["test_acc"] > 0.95  # real MNIST, 3 epochs on 60k
    assert summary["final"]["best"]["test_acc"] > 0.95


def test_run_outside_the_checkout_without_spec_uses_the_checkouts_default_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpo.cli import build_parser
    from hpo.cli.common import UsageError
    from hpo.cli.run import SHIPPED_SPEC, load_spec_args

    monkeypatch.chdir(tmp_path)  # no studies/ here
    spec = load_spec_args(build_parser("run").parse_args(["run"]))
    assert spec.source == str(SHIPPED_SPEC) and spec.trials == 50
    assert f"spec: {SHIPPED_SPEC} (no studies/mnist_mlp.toml here)" in capsys.readouterr().err
    # A --spec given is the user's, found or not.
    asked = build_parser("run").parse_args(["run", "--spec", "studies/other.toml"])
    with pytest.raises(UsageError, match=r"spec file studies/other\.toml not found"):
        load_spec_args(asked)
