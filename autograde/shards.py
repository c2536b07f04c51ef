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

import sys
from pathlib import Path

from . import AutogradeError
from .options import default_course_root
from .parts import Manifest, part_of

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
