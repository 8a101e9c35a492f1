"""A trial's TensorBoard events, read back with TensorBoard's own reader: one point per epoch,
and an hparams summary that shows only the fields the trial ran with and how it ended."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

from hpo.config import TrainConfig
from hpo.tb import OWNER, TrialWriter, claim, tensorboard_dir
from hpo.train import EpochMetrics


def written(folder: Path, config: TrainConfig, state: str) -> EventAccumulator:
    writer = TrialWriter(folder)
    for epoch in range(2):
        writer.epoch(
            EpochMetrics(epoch, 0.01, 0.5 - epoch / 10, 0.9, 0.4, 0.91 + epoch / 100, 1, 1)
        )
    writer.close(config, number=7, is_baseline=False, state=state)
    events = EventAccumulator(str(folder))
    events.Reload()
    return events


def plugin_data(events: EventAccumulator, tag: str) -> plugin_data_pb2.HParamsPluginData:
    content = events.summary_metadata[f"_hparams_/{tag}"].plugin_data.content
    return plugin_data_pb2.HParamsPluginData.FromString(content)


@pytest.mark.parametrize(
    ("state", "status"),
    [("complete", "STATUS_SUCCESS"), ("pruned", "STATUS_SUCCESS"), ("fail", "STATUS_FAILURE")],
)
def test_the_session_status_says_whether_the_trial_failed(
    tmp_path: Path, state: str, status: str
) -> None:
    events = written(tmp_path, TrainConfig(), state)
    end = plugin_data(events, "session_end_info").session_end_info
    assert api_pb2.Status.Name(end.status) == status
    hparams = plugin_data(events, "session_start_info").session_start_info.hparams
    assert hparams["state"].string_value == state and hparams["trial"].number_value == 7
    assert [e.value for e in events.Scalars("val/acc")] == pytest.approx([0.91, 0.92])
    assert [e.step for e in events.Scalars("val/acc")] == [0, 1]


def test_fields_the_schedule_ignores_are_left_out_of_the_hparams(tmp_path: Path) -> None:
    step = plugin_data(
        written(tmp_path / "step", TrainConfig(schedule="step", gamma=0.5), "complete"),
        "session_start_info",
    )
    assert step.session_start_info.hparams["gamma"].number_value == 0.5
    assert "step_every" in step.session_start_info.hparams
    flat = plugin_data(
        written(tmp_path / "none", TrainConfig(schedule="none"), "complete"), "session_start_info"
    )
    assert "gamma" not in flat.session_start_info.hparams
    assert "step_every" not in flat.session_start_info.hparams
    assert flat.session_start_info.hparams["lr"].number_value == TrainConfig().lr


def test_every_trial_declares_every_field_as_a_column_whichever_its_schedule_uses(
    tmp_path: Path,
) -> None:
    """TensorBoard's HPARAMS tab takes one run's experiment summary for all runs, whichever it
    finds: that of a trial without a step decay hid gamma and step_every from every trial."""
    columns = []
    for schedule in ("step", "none"):
        events = written(tmp_path / schedule, TrainConfig(schedule=schedule), "complete")
        infos = plugin_data(events, "experiment").experiment.hparam_infos
        columns.append([info.name for info in infos])
    assert columns[0] == columns[1]
    assert {"gamma", "step_every", "lr", "trial", "state"} <= set(columns[0])


def test_unmarked_events_are_set_aside_for_a_new_study_only(tmp_path: Path) -> None:
    """Events without an owner (an older hpo's, or copied in) are another study's to a study
    made now, so they go aside; a resumed study takes them as its own and moves nothing."""

    def unmarked_events() -> Path:
        folder = tensorboard_dir(tmp_path, "t")
        (folder / "trial-0000").mkdir(parents=True)
        (folder / "trial-0000" / "events.out.tfevents.1").write_bytes(b"")
        return folder

    folder = unmarked_events()
    assert claim(tmp_path, "t", "uid-a", new=False) is None
    assert (folder / OWNER).read_text() == "uid-a\n"
    assert (folder / "trial-0000" / "events.out.tfevents.1").is_file()
    (folder / OWNER).unlink()
    aside = claim(tmp_path, "t", "uid-b", new=True)
    assert aside is not None and aside.name.startswith("tensorboard-")
    assert (aside / "trial-0000" / "events.out.tfevents.1").is_file()
    assert (folder / OWNER).read_text() == "uid-b\n" and not (folder / "trial-0000").exists()
