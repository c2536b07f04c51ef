"""A class graded in parts on many machines, then joined: ``grade --shard I/N`` and ``merge``.

``python -m autograde grade SUBMISSIONS ... --out shards/I --shard I/N`` grades the students whose id falls in part
I of N. A student's part depends on a hash of the student id alone (after the LMS's naming is read, so all the
attempts of one student are one id): it is the same whatever order the files come in and whichever other students
the download holds, so one part can be graded again later on its own. Every shard writes a full grading ``--out``
of its own and a manifest, ``shard.json``: which part it is, the assignment's fingerprint, the whole class as
that shard found it (so that a merge can name the students of a part that is missing), and whether it finished.

``python -m autograde merge shards/* --out DIR`` then writes into DIR what one unsharded run would have written:
grades.csv, the feedback pages, the LMS import files and the class's nbgrader course (formgrader), and the cache
that lets a later ``grade`` into DIR reuse the results. Merging again is safe: hand grades entered in DIR's
formgrader are kept, as a grading run keeps them.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
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


# -- merge ---------------------------------------------------------------------------------------

def add_parser(commands) -> None:
    merge = commands.add_parser(
        "merge", help="join the --out folders of `grade --shard` runs into one",
        description="Join the --out folders of `grade --shard I/N` runs into DIR: grades.csv, feedback pages, LMS "
                    "import files and the class's nbgrader course, as one unsharded run writes them. Refuses (and "
                    "names the shards and the students missing) unless every part is there and finished.")
    merge.add_argument("shards", nargs="+", type=Path, metavar="SHARD_DIR")
    merge.add_argument("--out", required=True, type=Path, metavar="DIR", help="where the whole class's results go")
    merge.add_argument("--course", type=Path, default=None, metavar="DIR",
                       help="the nbgrader course folder the shards graded (default: here, or this repository)")
    merge.add_argument("--similarity", action="store_true",
                       help="also write similarity.csv and similarity.html over the whole class (see `grade --similarity`)")
    merge.add_argument("--partial", action="store_true",
                       help="merge the shards that finished even if some are missing (their students get no row)")
    merge.set_defaults(handler=_merge_command)


def _merge_command(args) -> int:
    from .cli import default_course_root

    manifests = check_shards(args.shards, args.partial)
    assignment = manifests[0][1].assignment
    from .run import merge_shards

    merge_shards(manifests, args.out, args.course or default_course_root(assignment), args.similarity,
                 args.started)
    return 0


def check_shards(folders: list[Path], partial: bool = False) -> list[tuple[Path, Manifest]]:
    """The shards' manifests, checked to make one class: the same assignment, source and N, every part once and
    finished (else an error naming what is missing and which students it would have held)."""
    found = [(folder.resolve(), Manifest.read(folder)) for folder in folders]
    first = found[0][1]
    for folder, manifest in found:
        for name in ("assignment", "fingerprint", "grader_version", "lms_column", "lms_points"):
            if getattr(manifest, name) != getattr(first, name):
                raise AutogradeError(f"{folder} graded another {name.replace('_', ' ')} ({getattr(manifest, name)}) "
                                     f"than {found[0][0]} ({getattr(first, name)}): grade it again")
        if manifest.part.count != first.part.count:
            raise AutogradeError(f"{folder} is part {manifest.shard} and {found[0][0]} part {first.shard}: "
                                 "all shards must split the class into the same number of parts")
    by_index: dict[int, tuple[Path, Manifest]] = {}
    for folder, manifest in found:
        if manifest.part.index in by_index:
            raise AutogradeError(f"part {manifest.shard} given twice: {by_index[manifest.part.index][0]} and {folder}")
        by_index[manifest.part.index] = (folder, manifest)
    problems = _missing(by_index, first.part.count)
    if problems and not partial:
        raise AutogradeError("cannot merge, the class is incomplete:\n" + "\n".join(problems)
                             + "\nGrade those parts again (or pass --partial to merge the rest).")
    for line in problems:
        print(f"autograde merge: {line}", file=sys.stderr)
    return [by_index[i] for i in sorted(by_index) if by_index[i][1].finished]


def _missing(by_index: dict[int, tuple[Path, Manifest]], count: int) -> list[str]:
    everyone = sorted({student for _, manifest in by_index.values() for student in manifest.students})
    problems = []
    for index in range(count):
        folder, manifest = by_index.get(index, (None, None))
        if manifest is not None and manifest.finished:
            continue
        what = f"shard {index}/{count} " + (f"({folder}) did not finish" if folder else "is missing")
        lacking = [student for student in everyone if part_of(student, count) == index]
        shown = ", ".join(lacking[:20]) + (f" and {len(lacking) - 20} more" if len(lacking) > 20 else "")
        problems.append(f"{what}; its students: {shown or 'none'}")
    return problems
