"""``hpo bench-report``: a stored pytest-benchmark JSON becomes the README's table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpo.bench_report import load, markdown, ratios
from hpo.cli import main

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
        "name": "test_one_epoch[cpu-torchvision]",
        "stats": {"median": 8.0},
        "extra_info": {"train_images": 60_000},
    }
    study = {
        "name": "test_study_jobs[2]",
        "stats": {"median": 50.0},
        "extra_info": {"model_epochs": 60, "train_images": 3_000_000},
    }
    found = {r["fast"]: r for r in ratios([tutorial, study])}
    # 7,500 images/s in the tutorial's loop vs 60,000 images/s in the study: 8x
    assert found["test_study_jobs[2]"]["ratio"] == pytest.approx(8.0)
    assert "--jobs 2" in found["test_study_jobs[2]"]["label"]
    # without its amount of work a throughput ratio is not computed at all
    del study["extra_info"]["train_images"]
    assert ratios([tutorial, study]) == []


def test_the_stored_sample_renders_every_benchmark_and_its_ratio() -> None:
    report = load(SAMPLE)
    text = markdown(report)
    for b in report["benchmarks"]:
        assert f"`{b['name']}`" in text
    medians = {b["name"]: b["stats"]["median"] for b in report["benchmarks"]}
    expected = (
        medians["test_study_overhead[in-memory-1000]"]
        / medians["test_study_overhead[in-memory-100]"]
    )
    assert f"{expected:.2f}x" in text
    assert "torch 2." in text and "cores" in text


def test_the_cli_writes_the_table_and_refuses_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "table.md"
    assert main(["bench-report", str(SAMPLE), "--out", str(out)]) == 0
    assert out.read_text() == markdown(json.loads(SAMPLE.read_text()))
    assert main(["bench-report", str(tmp_path / "nope.json")]) == 2
    assert "--benchmark-json" in capsys.readouterr().err
