import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from resnet_course import data


def test_digits_are_standardized_images():
    images, labels = data.load_digits()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.float32
    assert labels.shape == (1797,) and labels.dtype == torch.int64
    assert set(labels.tolist()) == set(range(10))
    assert abs(images.mean().item()) < 1e-5 and abs(images.std().item() - 1) < 1e-4


def make_cifar_archive(path, per_batch=4, seed=0):
    """A CIFAR-10 python archive in the real layout, with `per_batch` random images per batch.

    The batches are stored in the real archive's order, which is not 1 to 5.
    """
    rng = np.random.default_rng(seed)
    batches = {}
    with tarfile.open(path, "w:gz") as tar:
        for name in ["data_batch_4", "test_batch", "data_batch_3", "data_batch_2", "data_batch_5", "data_batch_1"]:
            batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                     b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
                     b"batch_label": name.encode()}
            batches[name] = batch
            payload = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"{data.CIFAR10_FOLDER}/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return batches, hashlib.md5(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def archive(tmp_path):
    source = tmp_path / "server" / "cifar-10-python.tar.gz"
    source.parent.mkdir()
    batches, md5 = make_cifar_archive(source)
    return source, batches, md5


def test_cifar_downloads_verifies_and_parses(archive, tmp_path):
    source, batches, md5 = archive
    cache = tmp_path / "cache"
    images, labels = data.load_cifar10(train=True, root=cache, url=source.as_uri(), md5=md5)
    assert images.shape == (20, 3, 32, 32) and images.dtype == torch.float32
    assert labels.tolist() == sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    first_pixel = batches["data_batch_1"][b"data"][0, 0] / 255
    expected = (first_pixel - data.CIFAR10_MEAN[0]) / data.CIFAR10_STD[0]
    assert images[0, 0, 0, 0].item() == pytest.approx(expected, abs=1e-5)
    # The red plane comes first: pixel 1024 of the row is the green channel's first pixel.
    green = (batches["data_batch_1"][b"data"][0, 1024] / 255 - data.CIFAR10_MEAN[1]) / data.CIFAR10_STD[1]
    assert images[0, 1, 0, 0].item() == pytest.approx(green, abs=1e-5)
    assert (cache / "cifar-10-python.tar.gz").exists()

    test_images, test_labels = data.load_cifar10(train=False, root=cache, url=source.as_uri(), md5=md5, limit=3)
    assert test_images.shape == (3, 3, 32, 32)
    assert test_labels.tolist() == batches["test_batch"][b"labels"][:3]


def test_cached_archive_is_used_without_downloading(archive, tmp_path):
    source, _, md5 = archive
    cache = tmp_path / "cache"
    data.load_cifar10(root=cache, url=source.as_uri(), md5=md5)
    source.unlink()  # a second call must not need the server any more
    images, _ = data.load_cifar10(root=cache, url=source.as_uri(), md5=md5, limit=2)
    assert images.shape == (2, 3, 32, 32)


def test_corrupted_download_is_rejected_and_not_cached(archive, tmp_path):
    source, _, md5 = archive
    raw = bytearray(source.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    source.write_bytes(bytes(raw))
    cache = tmp_path / "cache"
    with pytest.raises(data.DataError, match=f"corrupted.*expected {md5}"):
        data.load_cifar10(root=cache, url=source.as_uri(), md5=md5)
    assert list(cache.iterdir()) == []


def test_corrupted_cache_is_reported_with_its_path(archive, tmp_path):
    source, _, md5 = archive
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / source.name).write_bytes(b"not an archive")
    with pytest.raises(data.DataError, match="Delete it to download it again"):
        data.load_cifar10(root=cache, url=source.as_uri(), md5=md5)
    assert (cache / source.name).read_bytes() == b"not an archive"  # the learner's file is left alone


def test_unreachable_url_gives_a_clear_error(tmp_path):
    with pytest.raises(data.DataError, match="could not download"):
        data.load_cifar10(root=tmp_path, url=(tmp_path / "missing.tar.gz").as_uri(), md5="0" * 32)
    assert not list(tmp_path.glob("*.part"))


def test_archive_that_is_not_gzip_is_rejected(tmp_path):
    path = tmp_path / "broken.tar.gz"
    path.write_bytes(b"\x1f\x8b" + b"garbage" * 100)
    with pytest.raises(data.DataError, match="not a readable CIFAR-10 archive"):
        data.read_cifar10_archive(path)


def test_archive_without_batches_is_rejected(tmp_path):
    path = tmp_path / "empty.tar.gz"
    with tarfile.open(path, "w:gz"):
        pass
    with pytest.raises(data.DataError, match="no cifar-10-batches-py/data_batch_1"):
        data.read_cifar10_archive(path)


class Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_batches_cannot_run_code(tmp_path, capsys):
    path = tmp_path / "evil.tar.gz"
    payload = pickle.dumps({b"data": Exploit(), b"labels": []})
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(f"{data.CIFAR10_FOLDER}/test_batch")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(data.DataError, match="builtins.print"):
        data.read_cifar10_archive(path, train=False)
    assert "must never run" not in capsys.readouterr().out


def test_held_out_split_is_stratified_disjoint_and_complete():
    images, labels = data.load_digits()
    (train_images, train_labels), (held_images, held_labels) = data.split_held_out(images, labels, 0.25, seed=0)
    assert len(train_labels) + len(held_labels) == len(labels) and len(held_labels) == 450
    # Every class keeps its share in both parts, to within one image.
    share = labels.bincount().double() / len(labels)
    assert (held_labels.bincount().double() - share * len(held_labels)).abs().max() <= 1
    assert (train_labels.bincount().double() - share * len(train_labels)).abs().max() <= 1
    # The two parts are disjoint and together hold every image exactly once.
    rows = {tuple(row.tolist()) for row in images.flatten(1)}
    train_rows = {tuple(row.tolist()) for row in train_images.flatten(1)}
    held_rows = {tuple(row.tolist()) for row in held_images.flatten(1)}
    assert not train_rows & held_rows and train_rows | held_rows == rows
    # Each image keeps its own label.
    index = {tuple(row.tolist()): label for row, label in zip(images.flatten(1), labels.tolist())}
    assert all(index[tuple(row.tolist())] == label for row, label in zip(held_images.flatten(1), held_labels.tolist()))


def test_held_out_split_depends_only_on_its_seed():
    images, labels = data.load_digits()
    first = data.split_held_out(images, labels, seed=0)[1][0]
    again = data.split_held_out(images, labels, seed=0)[1][0]
    other = data.split_held_out(images, labels, seed=1)[1][0]
    assert torch.equal(first, again) and not torch.equal(first, other)
