"""``hpo bench-report``: a stored pytest-benchmark JSON becomes the README's table."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from benchmarks.alternate import Variant, alternate
from hpo.bench_report import RATIOS, expand, load, markdown, ratios, unmatched_names
from hpo.cli import main
from hpo.errors import HpoError

SAMPLE = Path(__file__).parent / "data" / "bench_sample.json"


def test_ratios_are_medians_of_the_same_run_divided() -> None:
    benchmarks = [
        {"name": "test_one_epoch[cpu-torchvision]", "stats": {"median": 7.0}},
        {"name": "test_one_epoch[cpu-tensor]", "stats": {"median": 0.7}},
        {"name": "test_study_overhead[sqlite-100]", "stats": {"median": 2.0}},
    ]
    found = ratios(benchmarks)
    assert len(found) == 1  # sqlite has no 1000-trial partner here
    assert found[0]["ratio"] == pytest.approx(10.0)
    assert "cpu" in found[0]["label"]


def test_throughput_ratios_divide_each_time_by_its_work_first() -> None:
    tutorial = {
        "name": "test_study_jobs[tutorial-loop]",
        "stats": {"median": 8.0},
        "extra_info": {"train_images": 60_000},
    }
    study: dict[str, Any] = {  # a record of pytest-benchmark's JSON
        "name": "test_study_jobs[2-bf16]",
        "stats": {"median": 50.0},
        "extra_info": {"model_epochs": 60, "train_images": 3_000_000},
    }
    found = {r["fast"]: r for r in ratios([tutorial, study])}
    # 7,500 images/s in the tutorial's loop vs 60,000 images/s in the study: 8x
    assert found["test_study_jobs[2-bf16]"]["ratio"] == pytest.approx(8.0)
    assert "--jobs 2, bf16," in found["test_study_jobs[2-bf16]"]["label"]
    # without its amount of work a throughput ratio is not computed at all
    del study["extra_info"]["train_images"]
    assert ratios([tutorial, study]) == []


def test_the_stored_sample_renders_every_benchmark_and_its_ratio() -> None:
    report = load(SAMPLE)
    text = markdown(report)
    rows = expand(report["benchmarks"])
    assert len(rows) > len(report["benchmarks"])  # the sample has alternated variants
    for b in rows:
        assert f"`{b['name']}`" in text
    rounds = {b["name"]: b.get("round_s", []) for b in rows}
    each = [
        slow / fast
        for slow, fast in zip(
            rounds["test_study_overhead[in-memory-1000]"],
            rounds["test_study_overhead[in-memory-100]"],
            strict=True,
        )
    ]
    assert f"{statistics.median(each):.2f}x" in text
    assert f"({min(each):.2f}x-{max(each):.2f}x)" in text
    assert "torch 2." in text and "cores" in text


def test_the_cli_writes_the_table_and_refuses_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "table.md"
    assert main(["bench-report", str(SAMPLE), "--out", str(out)]) == 0
    assert out.read_text() == markdown(json.loads(SAMPLE.read_text()))
    assert capsys.readouterr().out == f"wrote {out}\n"
    assert main(["bench-report", str(tmp_path / "nope.json")]) == 1  # as a bad one
    assert "--benchmark-json" in capsys.readouterr().err


def test_the_cli_says_a_folder_is_a_folder_not_that_it_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bench.json").write_text("{}")
    (tmp_path / "notes.md").write_text("")
    assert main(["bench-report", str(tmp_path)]) == 1  # as a bad file
    err = capsys.readouterr().err
    assert (
        f"{tmp_path} is a folder, not a benchmark JSON file (JSON files there: bench.json)" in err
    )
    assert "does not exist" not in err and "--benchmark-json FILE" in err


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("{bad", "is not JSON"),
        # what pytest-benchmark leaves with --benchmark-disable (CI's smoke)
        ("", "is empty: pytest-benchmark writes nothing there when timing is off"),
        ("{}", '"benchmarks" list'),
        ('{"benchmarks": []}', "holds no benchmarks: its run timed none"),  # all skipped
    ],
)
def test_the_cli_refuses_a_file_that_is_not_benchmark_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, said: str
) -> None:
    wrong = tmp_path / "wrong.json"
    wrong.write_text(text)
    assert main(["bench-report", str(wrong)]) == 1
    err = capsys.readouterr().err
    assert said in err and str(wrong) in err and "--benchmark-json FILE" in err


def test_an_output_path_that_cannot_be_written_is_named_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "missing" / "folder" / "table.md"  # folders are made, as for hpo report
    assert main(["bench-report", str(SAMPLE), "--out", str(out)]) == 0 and out.is_file()
    (tmp_path / "notes.md").write_text("a file")
    assert main(["bench-report", str(SAMPLE), "--out", str(tmp_path / "notes.md" / "t.md")]) == 1
    err = capsys.readouterr().err
    said = f"a file is in the way, where a folder must be: {tmp_path / 'notes.md'}"
    assert said in err and "Traceback" not in err and "File exists" not in err
    assert (tmp_path / "notes.md").read_text() == "a file"


OK = {"name": "x", "stats": {"median": 1.0, "min": 1.0, "rounds": 1}}


@pytest.mark.parametrize(
    ("data", "said"),
    [
        ({"machine_info": None}, "machine_info or its cpu is not an object"),
        ({"hpo_machine": {"versions": []}}, "hpo_machine or its versions is not an object"),
        ({"hpo_ratios": [{"ratio": 2.0}]}, "hpo_ratios is not a list of labelled ratios"),
        (  # alternated rounds without their range: a KeyError traceback before
            {"hpo_ratios": [{"label": "x", "ratio": 2.0, "rounds": 3}]},
            "hpo_ratios is not a list of labelled ratios",
        ),
        ({"benchmarks": [{**OK, "extra_info": None}]}, "benchmark 0's extra_info is not an object"),
        (
            {"benchmarks": [{**OK, "extra_info": {"model_epochs": "60"}}]},
            "benchmark 0's extra_info.model_epochs is '60', not a number",
        ),
    ],
)
def test_a_file_with_a_part_of_the_wrong_shape_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: dict[str, Any], said: str
) -> None:
    wrong = tmp_path / "b.json"
    wrong.write_text(json.dumps({"benchmarks": [OK], **data}))
    assert main(["bench-report", str(wrong)]) == 1
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err


def test_json_nested_deeper_than_the_parser_goes_is_refused_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = tmp_path / "b.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert main(["bench-report", str(deep)]) == 1
    err = capsys.readouterr().err
    assert "nested too deeply to be a benchmark file" in err and "Traceback" not in err


@pytest.mark.parametrize("entry", [{"name": "x"}, {"name": "x", "stats": {"median": "?"}}, 3])
def test_a_benchmark_without_its_stats_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], entry: object
) -> None:
    wrong = tmp_path / "b.json"
    wrong.write_text(json.dumps({"benchmarks": [entry]}))
    assert main(["bench-report", str(wrong)]) == 1
    err = capsys.readouterr().err
    assert "benchmark 0 has no name or no stats" in err and "Traceback" not in err


def test_time_split_reads_where_a_studys_time_went(tmp_path: Path) -> None:
    import datetime as dt

    import optuna

    from benchmarks.time_split import time_split

    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=storage)
    study.set_user_attr("spec_hash", "abc")  # as hpo run marks its studies
    start = dt.datetime(2026, 1, 1, 12, 0, 0)
    # (train seconds per epoch, eval seconds per epoch, the trial's wall seconds)
    for k, (train, evals, wall) in enumerate([([1.0, 2.0], [0.5, 0.5], 5.0), ([3.0], [1.0], 4.5)]):
        study.add_trial(
            optuna.trial.FrozenTrial(
                number=k,
                trial_id=k,
                state=optuna.trial.TrialState.COMPLETE,
                value=0.9,
                datetime_start=start + dt.timedelta(seconds=10 * k),
                datetime_complete=start + dt.timedelta(seconds=10 * k + 5),
                params={},
                distributions={},
                user_attrs={
                    "curves": {"train_seconds": train, "eval_seconds": evals},
                    "wall_seconds": wall,
                },
                system_attrs={},
                intermediate_values={},
            )
        )
    got = time_split(storage, "s", jobs=2, wall=30.0, launched=start - dt.timedelta(seconds=12))
    assert got == {
        "epoch_s_per_worker": 2.0,  # median of 1, 2, 3
        "train_s_per_worker": 3.0,  # 6 s over 2 workers
        "eval_s_per_worker": 1.0,
        "other_s_per_worker": 0.8,  # (5 - 3 - 1) + (4.5 - 3 - 1) = 1.5 s over 2, to 0.1 s
        "trial_overhead_s_median": 0.75,  # median of 1.0 and 0.5
        "outside_trials_s": 15.0,  # 30 s of wall, 15 s from the first start to the last end
        "start_s": 12.0,  # launched 12 s before the first trial started
        "end_s": 3.0,  # the last trial ended 15 s after that, 27 s into the 30
    }
    assert "start_s" not in time_split(storage, "s", wall=30.0)  # no launch time, no split
    absent = tmp_path / "absent.db"
    with pytest.raises(HpoError, match="no study storage at"):  # not created, then a KeyError
        time_split(f"sqlite:///{absent}", "s")
    assert not absent.exists()


def test_ratios_are_recomputed_from_the_medians_the_table_prints() -> None:
    """A ratio stored in the file that disagrees with its medians (an edited file, or one
    written by older code) must not be printed beside them."""
    report = load(SAMPLE)
    epoch = next(b for b in report["benchmarks"] if b["name"] == "test_one_epoch[cpu]")
    variants = epoch["extra_info"]["variants"]
    loop = variants["test_one_epoch[cpu-torchvision]"]["round_s"]
    variants["test_one_epoch[cpu-tensor]"]["round_s"] = [t / 4 for t in loop]  # exactly 4x
    assert all(r["ratio"] != pytest.approx(4.0) for r in report["hpo_ratios"])  # as stored
    text = markdown(report)
    line = next(x for x in text.splitlines() if x.startswith("| one epoch, tensor path vs"))
    assert "| 4.00x |" in line, line


class _Benchmark:
    """pytest-benchmark's fixture as alternate() uses it: ``pedantic`` runs its target once per
    round, ``extra_info`` is stored."""

    def __init__(self) -> None:
        self.extra_info: dict[str, Any] = {}

    def pedantic(self, target: Any, rounds: int, iterations: int) -> None:
        for _ in range(rounds):
            target()


def test_alternate_runs_every_variant_each_round_in_turn_reversing_the_order() -> None:
    calls: list[str] = []

    def variant(name: str) -> Variant:
        def run() -> int:
            calls.append(f"run {name}")
            return len(calls)

        return Variant(name, run, prepare=lambda: calls.append(f"prepare {name}"))

    variants = [variant("a"), variant("b")]
    bench = _Benchmark()
    alternate(bench, variants, rounds=3)
    runs = [c.split()[1] for c in calls if c.startswith("run")]
    assert runs == ["a", "b", "b", "a", "a", "b"]  # a drift falls on both alike
    assert all(calls[i] == f"prepare {runs[i // 2]}" for i in range(0, len(calls), 2))
    assert variants[0].results == [2, 8, 10] and variants[1].results == [4, 6, 12]
    stored = bench.extra_info["variants"]
    assert list(stored) == ["a", "b"] and [len(v["round_s"]) for v in stored.values()] == [3, 3]
    variants[0].extra_info["n"] = 1  # filled in after the rounds, stored by reference
    assert stored["a"]["extra_info"] == {"n": 1}
    with pytest.raises(ValueError, match="variant names repeat"):
        alternate(_Benchmark(), [Variant("a", int), Variant("a", int)], rounds=1)


def _alternated(slow: list[float], fast: list[float], **extra: Any) -> dict[str, Any]:
    """A pytest-benchmark record of test_one_epoch[cpu] as alternate() leaves it."""
    variants = {
        "test_one_epoch[cpu-torchvision]": {"round_s": slow, "extra_info": {"loop": True}},
        "test_one_epoch[cpu-tensor]": {"round_s": fast, "extra_info": {}},
    }
    return {
        "name": "test_one_epoch[cpu]",
        "stats": {"median": 99.0, "min": 99.0, "rounds": len(slow)},
        "extra_info": {"variants": variants, **extra},
    }


def test_alternated_variants_are_divided_round_by_round_not_median_by_median() -> None:
    # per round 10x, 5x, 10x: median 10x; the medians alone (20 s / 3 s) would say 6.67x
    (found,) = ratios([_alternated([10.0, 20.0, 30.0], [1.0, 4.0, 3.0])])
    assert found["ratio"] == pytest.approx(10.0)
    assert (found["low"], found["high"], found["rounds"]) == (pytest.approx(5.0), 10.0, 3)
    rows = {b["name"]: b for b in expand([_alternated([10.0, 20.0, 30.0], [1.0, 4.0, 3.0])])}
    assert set(rows) == {"test_one_epoch[cpu-torchvision]", "test_one_epoch[cpu-tensor]"}
    assert rows["test_one_epoch[cpu-tensor]"]["stats"] == {"median": 3.0, "min": 1.0, "rounds": 3}
    assert rows["test_one_epoch[cpu-torchvision]"]["extra_info"] == {"loop": True}


def test_each_variant_row_has_its_own_rounds_min_and_its_own_notes_over_the_rounds() -> None:
    # The fastest round need not be the first (a cold cache slows round 1, not the others).
    rows = {b["name"]: b for b in expand([_alternated([30.0, 10.0, 20.0], [4.0, 3.0, 1.0],
                                                      loop=False, epochs=1)])}  # fmt: skip
    slow, fast = rows["test_one_epoch[cpu-torchvision]"], rows["test_one_epoch[cpu-tensor]"]
    assert slow["stats"] == {"median": 20.0, "min": 10.0, "rounds": 3}
    assert fast["stats"] == {"median": 3.0, "min": 1.0, "rounds": 3}
    assert slow["round_s"] == [30.0, 10.0, 20.0] and slow["alternated"] == "test_one_epoch[cpu]"
    # A variant's own note wins over the round benchmark's of the same name.
    assert slow["extra_info"] == {"loop": True, "epochs": 1}
    assert fast["extra_info"] == {"loop": False, "epochs": 1}


def test_alternated_rounds_with_a_zero_time_fall_back_to_the_medians() -> None:
    """A round timed at 0.0 s (a clock too coarse for it) cannot be divided by: the ratio is
    taken median by median, 20 s / 1 s, rather than raising ZeroDivisionError."""
    (found,) = ratios([_alternated([10.0, 20.0, 30.0], [1.0, 0.0, 3.0])])
    assert found["ratio"] == pytest.approx(20.0)
    assert "rounds" not in found and "low" not in found


def test_a_variant_timed_apart_from_its_partner_is_divided_by_medians() -> None:
    study = {
        "name": "test_study_jobs[2-bf16]",
        "stats": {"median": 10.0, "min": 10.0, "rounds": 1},
        "extra_info": {"train_images": 500_000},
    }
    loop = {
        "name": "test_study_jobs",
        "stats": {"median": 99.0, "min": 99.0, "rounds": 2},
        "extra_info": {
            "variants": {"test_study_jobs[tutorial-loop]": {
                "round_s": [8.0, 12.0], "extra_info": {"train_images": 60_000},
            }}
        },
    }  # fmt: skip
    (found,) = ratios([loop, study])
    # 6,000 images/s (10 s median) vs 50,000: 8.33x, and no rounds to show for it
    assert found["ratio"] == pytest.approx(50_000 / 6_000) and "rounds" not in found


def test_the_table_shows_each_variant_and_how_each_ratio_was_taken() -> None:
    text = markdown({"benchmarks": [_alternated([10.0, 20.0, 30.0], [1.0, 4.0, 3.0], load=1.5)]})
    assert "| `test_one_epoch[cpu-tensor]` | 3.00 s | 1.00 s | 3, alternated | load=1.5 |" in text
    assert "`test_one_epoch[cpu]`" not in text  # the rounds' sum is no one's time
    assert "| 10.00x | median of 3 alternated rounds' ratios (5.00x-10.00x) |" in text


@pytest.mark.parametrize(
    ("variants", "said"),
    [
        ({}, "extra_info.variants is not an object of variants"),
        ({"a": {"round_s": []}}, "variant a is not an object of variants"),
        ({"a": {"round_s": [1.0, "2"]}}, "variant a is not"),
        ({"a": {"round_s": [1.0], "extra_info": []}}, "variant a is not"),
        ({"a": {"round_s": [1.0]}, "b": {"round_s": [1.0, 2.0]}}, "different numbers of rounds"),
        (
            {"a": {"round_s": [1.0], "extra_info": {"train_images": None}}},
            "variant a's extra_info.train_images is None, not a number",
        ),
    ],
)
def test_a_file_with_malformed_variants_is_refused_naming_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], variants: dict[str, Any], said: str
) -> None:
    wrong = tmp_path / "b.json"
    wrong.write_text(json.dumps({"benchmarks": [{**OK, "extra_info": {"variants": variants}}]}))
    assert main(["bench-report", str(wrong)]) == 1
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err


def test_every_cpu_ratio_is_found_in_the_stored_full_run_and_its_slow_side_is_slower() -> None:
    """The sample is a whole `pytest benchmarks/` run on a CPU: a benchmark renamed without its
    RATIOS entry (or the reverse) leaves a ratio out here."""
    labels = {r["label"]: r["ratio"] for r in ratios(load(SAMPLE)["benchmarks"])}
    on_gpu = ("[cuda", "[mps")
    cpu = [label for label, slow, fast, _ in RATIOS if not any(d in slow + fast for d in on_gpu)]
    assert sorted(labels) == sorted(cpu)
    assert all(value > 1 for value in labels.values()), labels


def test_a_ratio_name_its_benchmark_no_longer_times_is_named_and_only_its_own() -> None:
    """benchmarks/conftest.py fails a run (CI's smoke too) over these, test by test: a
    benchmark or variant renamed without its RATIOS entry would otherwise drop its ratio without
    a word. Each test answers for its own names only: a run of some benchmarks (-k, a node id)
    asks nothing of the others."""
    benchmarks = load(SAMPLE)["benchmarks"]  # a whole run on a CPU, every name as RATIOS has it
    for b in benchmarks:
        timed = {b["name"], *b.get("extra_info", {}).get("variants", {})}
        assert unmatched_names(b["name"], timed) == [], b["name"]
    epoch = next(b for b in benchmarks if b["name"] == "test_one_epoch[cpu]")
    renamed = {
        "test_one_epoch[cpu]",
        "test_one_epoch[cpu-torchvision]",
        "test_one_epoch[cpu-tensors]",
    }
    assert unmatched_names("test_one_epoch[cpu]", renamed) == ["test_one_epoch[cpu-tensor]"]
    assert set(epoch["extra_info"]["variants"]) - renamed == {"test_one_epoch[cpu-tensor]"}
    # A test id owns the names extending it: test_study_jobs all of its own, [cuda] not [cpu]'s.
    jobs = unmatched_names("test_study_jobs", {"test_study_jobs"})
    assert jobs and all(name.startswith("test_study_jobs[") for name in jobs)
    assert "test_one_epoch[cpu-tensor]" not in unmatched_names("test_one_epoch[cuda]", set())
    assert unmatched_names("test_short_study", {"test_short_study"}) == []  # in no ratio


def test_an_out_naming_the_benchmark_file_or_another_foreign_file_is_refused_and_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "bench.json"
    data.write_bytes(SAMPLE.read_bytes())
    assert main(["bench-report", str(data), "--out", str(data)]) == 2
    err = capsys.readouterr().err
    assert f"--out {data} is a JSON file, which this command would replace and lose" in err
    assert data.read_bytes() == SAMPLE.read_bytes()
    (notes := tmp_path / "notes.md").write_text("# my notes")
    assert main(["bench-report", str(data), "--out", str(notes)]) == 2
    assert f"--out {notes} is a file," in capsys.readouterr().err
    assert notes.read_text() == "# my notes"
    with pytest.raises(SystemExit) as exit_:  # argparse's usage error
        main(["bench-report", str(data), "--out", ""])
    assert exit_.value.code == 2 and "--out: a path must not be empty" in capsys.readouterr().err
    table = tmp_path / "table.md"  # its own output, replaced on a rerun
    assert main(["bench-report", str(data), "--out", str(table)]) == 0
    assert main(["bench-report", str(data), "--out", str(table)]) == 0
    assert table.read_text().startswith("Machine:")


def test_a_file_whose_benchmarks_no_ratio_names_shows_the_ratios_stored_with_it() -> None:
    # conftest stores the ratios it computed; a file from a version whose benchmarks were since
    # renamed has nothing to recompute them from, and still shows what that run measured.
    stored = [{"label": "tensor loop vs tutorial loop", "ratio": 2.5}]
    renamed = [{"name": "test_since_renamed", "stats": {"median": 1.0, "min": 1.0, "rounds": 1}}]
    text = markdown({"benchmarks": renamed, "hpo_ratios": stored})
    assert text.endswith(
        "| ratio (same run) | value | from |\n| --- | --- | --- |\n"
        "| tensor loop vs tutorial loop | 2.50x | medians of variants timed one after the other |\n"
    )
    assert "ratio (same run)" not in markdown({"benchmarks": []})


def test_the_machine_line_says_whether_the_run_had_an_accelerator() -> None:
    cpu = {"machine_info": {"cpu": {"brand_raw": "Xeon", "count": 16}}, "benchmarks": []}
    assert markdown(cpu).splitlines()[0] == "Machine: Xeon, 16 cores; no accelerator"
    gpu = {**cpu, "hpo_machine": {"accelerator": "NVIDIA H200"}}
    assert markdown(gpu).splitlines()[0] == "Machine: Xeon, 16 cores; accelerator: NVIDIA H200"
