"""Data sets for the lessons: sklearn's digits (ships offline) and CIFAR-10 (downloaded once, then cached)."""
import hashlib
import io
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
DEFAULT_CACHE = Path(os.environ.get("RESNET_COURSE_DATA", Path.home() / ".cache" / "resnet_course"))


class DataError(RuntimeError):
    """A data file is missing, corrupted or not in the expected format."""


def load_digits(device="cpu"):
    """sklearn's 1,797 handwritten digits as images of shape (N, 1, 8, 8), standardized, and int64 labels."""
    from sklearn.datasets import load_digits as sklearn_digits  # here: importing sklearn takes about a second

    digits = sklearn_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1)
    images = (images - images.mean()) / images.std()
    labels = torch.tensor(digits.target, dtype=torch.int64)
    return images.to(device), labels.to(device)


def load_cifar10(train=True, root=DEFAULT_CACHE, limit=None, device="cpu", url=CIFAR10_URL, md5=CIFAR10_MD5):
    """CIFAR-10 as standardized float images (N, 3, 32, 32) and int64 labels, downloading the archive once.

    `limit` keeps only the first images, so a small run fits in a 2 GB machine.
    """
    archive = fetch_archive(url, Path(root).expanduser(), md5)
    images, labels = read_cifar10_archive(archive, train)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    images = (torch.from_numpy(images).float().div_(255) - mean) / std
    return images.to(device), torch.from_numpy(labels).to(device)


def fetch_archive(url, root, md5):
    """The archive behind `url` in `root`, downloaded unless already there; its MD5 checksum is always verified."""
    root.mkdir(parents=True, exist_ok=True)
    target = archive_path(root, url)
    if not target.exists():
        _download(url, target, md5)
    elif (actual := file_md5(target)) != md5:
        raise DataError(f"{target} is corrupted: its MD5 is {actual}, expected {md5}. Delete it to download it again.")
    return target


def archive_path(root, url):
    """Where the archive behind `url` is kept in `root`."""
    return Path(root).expanduser() / urllib.request.url2pathname(url.rsplit("/", 1)[-1])


def _download(url, target, md5):
    # Download beside the target and move it into place only once verified, so a broken download never lands.
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".part", delete=False) as part:
        try:
            with urllib.request.urlopen(url) as response:
                size = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=size, unit="B", unit_scale=True, desc=f"Downloading {target.name}") as bar:
                    while chunk := response.read(1 << 20):
                        part.write(chunk)
                        bar.update(len(chunk))
        except OSError as error:
            os.unlink(part.name)
            raise DataError(f"could not download {url}: {error}") from error
    actual = file_md5(part.name)
    if actual != md5:
        os.unlink(part.name)
        raise DataError(f"the download of {url} is corrupted: its MD5 is {actual}, expected {md5}")
    shutil.move(part.name, target)


def file_md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_cifar10_archive(archive, train=True):
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 from the python-format CIFAR-10 tar.gz."""
    names = [f"{CIFAR10_FOLDER}/data_batch_{i}" for i in range(1, 6)] if train else [f"{CIFAR10_FOLDER}/test_batch"]
    found = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            # One pass in the archive's own order: going back in a gzip stream decompresses it again from the start.
            for member in tar:
                if member.name in names:
                    found[member.name] = _read_batch(tar, member)
                    if len(found) == len(names):
                        break
    except (tarfile.TarError, EOFError, OSError, zlib.error, pickle.UnpicklingError) as error:
        raise DataError(f"{archive} is not a readable CIFAR-10 archive: {error}") from error
    missing = [name for name in names if name not in found]
    if missing:
        raise DataError(f"the CIFAR-10 archive has no {missing[0]}")
    batches = [found[name] for name in names]
    images = np.concatenate([b[0] for b in batches]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([b[1] for b in batches]).astype(np.int64)
    return images, labels


def _read_batch(tar, member):
    raw = tar.extractfile(member)
    if raw is None:
        raise DataError(f"{member.name} in the CIFAR-10 archive is not a file")
    batch = _ArrayUnpickler(io.BytesIO(raw.read()), encoding="bytes").load()
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"])
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(f"{member.name} in the CIFAR-10 archive is not a data batch: {error!r}") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DataError(f"{member.name} holds data of shape {data.shape} and {len(labels)} labels; "
                        f"expected (N, 3072) and N labels")
    return data, labels


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays only: a downloaded file never gets to run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how protocol-2 pickles spell bytes
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise DataError(f"the CIFAR-10 batch refers to {module}.{name}, which a data file never needs")
        return super().find_class(module, name)


def split_held_out(images, labels, held_out=0.25, seed=0):
    """A stratified split into ((train_images, train_labels), (held_out_images, held_out_labels)).

    Stratified: every class keeps its share in both parts, so held-out accuracy is not skewed by the draw;
    `seed` fixes which images are held out.
    """
    from sklearn.model_selection import train_test_split  # here: importing sklearn takes about a second

    parts = train_test_split(np.arange(len(labels)), test_size=held_out, random_state=seed,
                             stratify=labels.cpu().numpy())
    indices = [torch.from_numpy(part).to(labels.device) for part in parts]
    return tuple((images[index], labels[index]) for index in indices)
