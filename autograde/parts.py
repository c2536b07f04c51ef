"""The parts of a class graded apart (``grade --shard I/N``): which part a student falls in, and the manifest each
part's grading run leaves for the merge (:mod:`autograde.shards`)."""
from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import AutogradeError
from .results import atomic_write

MANIFEST = "shard.json"


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``I/N``, as the command line writes it (argparse's type)."""
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected I/N such as 0/4, got {text!r}") from None
        if not 0 <= index < count:
            raise argparse.ArgumentTypeError(f"shard {text}: I must be at least 0 and less than N")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, student_id: str) -> bool:
        return part_of(student_id, self.count) == self.index


def part_of(student_id: str, count: int) -> int:
    """The part (0 to count - 1) a student id falls in. Case-blind, as a class's student ids are."""
    digest = hashlib.sha256(student_id.casefold().encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass
class Manifest:
    """``shard.json``: what a shard's grading run was, for the merge."""

    shard: str  # "I/N"
    assignment: str
    fingerprint: str  # the assignment's source it graded against
    grader_version: str
    lms: str  # the download's layout
    students: list[str]  # the whole class this shard found, every part
    ignored: list[str] = field(default_factory=list)  # side files that gave no row
    due: str | None = None
    lms_column: str | None = None  # the LMS import files' column header and points (grade's options), for the
    lms_points: float | None = None  # merge's import files to be the ones an unsharded run writes
    roster: list[dict] | None = None  # --roster's students (autograde.roster.Member), for the merge
    finished: bool = False  # False while grading, and for good if the run failed

    def write(self, out: Path) -> None:
        atomic_write(out / MANIFEST, json.dumps(asdict(self), indent=1, ensure_ascii=False))

    @classmethod
    def read(cls, out: Path) -> "Manifest":
        try:
            return cls(**json.loads((out / MANIFEST).read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise AutogradeError(f"{out} is not a shard's --out: it has no {MANIFEST}") from None
        except (ValueError, TypeError) as exc:
            raise AutogradeError(f"{out / MANIFEST} is damaged ({exc}): grade that shard again") from None

    @property
    def part(self) -> Shard:
        return Shard.parse(self.shard)
