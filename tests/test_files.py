"""hpo.files: a file replaced whole or not at all, and a lock that excludes other holders."""

from __future__ import annotations

import fcntl
import stat
from pathlib import Path

import pytest

from hpo.files import exclusive_lock, foreign, replacing


def test_replacing_swaps_in_the_whole_new_file_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "new" / "report.html"  # a folder that is not there yet
    with replacing(path) as tmp:
        assert tmp.parent == path.parent and tmp.name.startswith(".report.html.")
        tmp.write_bytes(b"half")
        assert not path.exists()  # nothing at the name until the block ends
        tmp.write_bytes(b"whole")
    assert path.read_bytes() == b"whole"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]


@pytest.mark.parametrize("error", [OSError, KeyboardInterrupt])
def test_a_writer_that_raises_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, error: type[BaseException]
) -> None:
    path = tmp_path / "cache.pt"
    path.write_bytes(b"old")
    with pytest.raises(error), replacing(path) as tmp:
        tmp.write_bytes(b"half of the new")
        raise error
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["cache.pt"]


def test_replacing_takes_the_temporary_name_and_mode_a_caller_needs(tmp_path: Path) -> None:
    path = tmp_path / "step.pt2"
    with replacing(path, prefix=".building-step-", suffix=".pt2", mode=None) as tmp:
        assert tmp.name.startswith(".building-step-") and tmp.name.endswith(".pt2")
        tmp.write_bytes(b"package")
    assert path.read_bytes() == b"package"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # mkstemp's, kept


def _taken(lock: Path) -> bool:
    """Whether another holder has ``lock``: flock locks belong to an open file, so a second
    open in this process contends like another process would."""
    with lock.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def test_exclusive_lock_is_held_for_the_block_only(tmp_path: Path) -> None:
    lock = tmp_path / "made" / ".lock"
    with exclusive_lock(lock):
        assert _taken(lock)
    assert not _taken(lock)


def test_an_unopenable_lock_raises_unless_best_effort(tmp_path: Path) -> None:
    lock = tmp_path / "absent" / ".lock"
    with pytest.raises(FileNotFoundError), exclusive_lock(lock, make_folder=False):
        pytest.fail("the block ran without its lock")
    ran = []
    with exclusive_lock(lock, make_folder=False, best_effort=True):
        ran.append(True)
    assert ran and not lock.parent.exists()  # run unlocked, and no folder made


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_error_names_the_file_asked_for_not_the_temporary_one() -> None:
    # /proc takes no new files, whoever asks (root too): the temporary file cannot be made.
    with pytest.raises(FileNotFoundError) as missing, replacing(Path("/proc/x.html")):
        pass
    assert missing.value.filename == "/proc/x.html"


def test_a_block_that_cannot_replace_its_path_names_the_path_and_leaves_no_temporary(
    tmp_path: Path,
) -> None:
    # os.replace onto a folder fails naming the temporary file, which the user never named.
    path = tmp_path / "report.html"
    path.mkdir()
    with pytest.raises(IsADirectoryError) as err, replacing(path) as tmp:
        tmp.write_bytes(b"page")
    assert err.value.filename == str(path)
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"] and path.is_dir()


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"", None),  # empty: nothing to lose
        (b" \n\t", None),
        (b"<!DOCTYPE html><p>an old report", None),  # its own output, however it is spelt
        (b"\n  <!doctype html>", None),
        (b"SQLite format 3\0rest of the database", "an SQLite database"),
        (b'\n  {"trials": []}', "a JSON file"),
        (b"[1, 2]", "a JSON file"),
        (b"# my notes <!doctype html>", "a file"),
    ],
)
def test_foreign_says_what_a_file_that_is_not_the_commands_own_holds(
    tmp_path: Path, content: bytes, kind: str | None
) -> None:
    # What `--out` would replace: the CLI refuses it, naming what it is (hpo.cli.common).
    path = tmp_path / "out"
    path.write_bytes(content)
    assert foreign(path, b"<!doctype html") == kind


def test_foreign_names_a_folder_and_an_unreadable_file_and_passes_an_absent_one(
    tmp_path: Path,
) -> None:
    assert foreign(tmp_path, b"<!doctype html") == "a folder"
    assert foreign(tmp_path / "absent", b"<!doctype html") is None
    assert foreign(tmp_path / "absent" / "deeper", b"<!doctype html") is None
    (tmp_path / "notes.md").write_text("# notes")  # a file where a folder must be: the
    assert foreign(tmp_path / "notes.md" / "r.html", b"<!doctype html") is None  # writer's to say
    if Path("/proc/self/mem").exists():  # opens, but reading its start fails, root or not
        assert foreign(Path("/proc/self/mem"), b"<!doctype html") == "a file hpo cannot read"
