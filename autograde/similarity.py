"""``--similarity``: pairs of submissions whose answers are suspiciously alike, for a person to look at.

Each student's answers (the code cells that are not the release's, and the written answers) become a set of
fingerprints: token 6-grams of the code with every name the release does not use replaced by one placeholder,
numbers and strings by theirs, comments dropped (renaming variables or rewording comments changes nothing), and
word 4-grams of the written answers. What the release itself contains is taken out, and so is what more than
half of the class shares (the one obvious way to write a line is not copying). Two students whose sets overlap
by at least ``THRESHOLD`` (Jaccard) are listed in ``similarity.csv``. Nothing here changes a grade.
"""
from __future__ import annotations

import csv
import hashlib
import io
import itertools
import keyword
import re
from collections import Counter
from pathlib import Path

import nbformat

from .results import Result, atomic_write, spreadsheet_text

THRESHOLD = 0.7
MIN_FINGERPRINTS = 12  # fewer: too little of their own to compare (an untouched release, a one-liner)
_TOKENS = re.compile(r"(?P<comment>#[^\n]*)"
                     r"|(?P<string>'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\\n])*'|\"(?:\\.|[^\"\\\n])*\")"
                     r"|(?P<number>\d[\w.]*)|(?P<name>[^\W\d]\w*)|(?P<op>\S)", re.DOTALL)


def _code_tokens(source: str, kept: set[str]) -> list[str]:
    tokens = []
    for match in _TOKENS.finditer(source):
        kind, text = match.lastgroup, match.group()
        if kind == "comment":
            continue
        if kind == "name":
            tokens.append(text if keyword.iskeyword(text) or text in kept else "v")
        else:
            tokens.append({"string": "s", "number": "0"}.get(kind, text))
    return tokens


def _grams(tokens: list[str], n: int, kind: str) -> set[str]:
    return {hashlib.sha1(f"{kind}\0{' '.join(tokens[i:i + n])}".encode()).hexdigest()[:16]
            for i in range(len(tokens) - n + 1)}


def fingerprints(nb, release_names: set[str], release_texts: set[str]) -> set[str]:
    """The fingerprints of what a student wrote themselves in *nb*."""
    found = set()
    for cell in nb.cells:
        source = cell.get("source", "")
        if not isinstance(source, str) or source.strip() in release_texts:
            continue
        nbgrader = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code":
            found |= _grams(_code_tokens(source, release_names), 6, "code")
        elif cell.cell_type == "markdown" and nbgrader.get("solution"):
            found |= _grams(re.findall(r"\w+", source.lower()), 4, "text")
    return found


def similar_pairs(prints: dict[str, set[str]], given: set[str]) -> list[tuple[str, str, float, int]]:
    """(student, student, Jaccard, shared) for every pair at or above the threshold, most alike first."""
    common = Counter(fp for fps in prints.values() for fp in fps)
    everyone = {fp for fp, n in common.items() if len(prints) >= 4 and n > len(prints) / 2}
    own = {student: fps - given - everyone for student, fps in prints.items()}
    pairs = []
    for (a, fa), (b, fb) in itertools.combinations(sorted(own.items()), 2):
        if len(fa) < MIN_FINGERPRINTS or len(fb) < MIN_FINGERPRINTS:
            continue
        shared = len(fa & fb)
        score = shared / len(fa | fb)
        if score >= THRESHOLD:
            pairs.append((a, b, round(score, 2), shared))
    return sorted(pairs, key=lambda pair: (-pair[2], pair[0], pair[1]))


def write_similarity(out: Path, results: list[Result], release, submitted: dict[str, Path]) -> str:
    """similarity.csv for the class's graded notebooks (*submitted*: student -> the file handed in); returns the
    summary's line. Group members who handed in one file are not a pair."""
    release_texts = {cell.source.strip() for cell in release.cells}
    release_names = {m.group() for cell in release.cells if cell.cell_type == "code"
                     for m in re.finditer(r"[^\W\d]\w*", cell.source)}
    given = fingerprints(release, release_names, set())
    prints, files = {}, {}
    for result in results:
        path = submitted.get(result.student_id)
        if path is None or not path.is_file():
            continue
        try:
            prints[result.student_id] = fingerprints(nbformat.read(path, as_version=4), release_names, release_texts)
        except Exception:  # noqa: BLE001 - a notebook nbformat cannot read has no answers to compare
            continue
        files[result.student_id] = path.read_bytes()
    grouped = {r.student_id for r in results if any(note.startswith("group submission with") for note in r.notes)}
    pairs = [(a, b, score, shared) for a, b, score, shared in similar_pairs(prints, given)
             if not (a in grouped and b in grouped and files[a] == files[b])]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student_a", "student_b", "similarity", "shared_fragments"])
    writer.writerows([spreadsheet_text(a), spreadsheet_text(b), score, shared] for a, b, score, shared in pairs)
    atomic_write(out / "similarity.csv", buffer.getvalue())
    return (f"{out / 'similarity.csv'}: {len(pairs)} pair(s) at least {THRESHOLD:.0%} alike, for a person to look "
            "at (grades are unchanged)")
