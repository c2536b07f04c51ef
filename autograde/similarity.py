"""``--similarity``: pairs of submissions far more alike than the class's other pairs, for a person to look at.

How it decides (nothing here changes a grade):

* Answers are compared cell by cell: each answer cell of the release (an nbgrader ``solution`` cell, found in the
  student's notebook by its ``grade_id``) with the same cell of the other student; the code cells a student added
  count together as one more cell.
* A code cell becomes a set of fingerprints: token 5-grams of each statement (logical line), tokenized by Python's
  ``tokenize`` (a regex, line by line, where a student's code does not tokenize), comments dropped, strings made
  one placeholder, and every name that is the student's own numbered by its first occurrence in the statement.
  Kept as written are keywords, called builtins (``len(``), keyword arguments (``kernel_size=``) and attributes
  (``.weight``, ``nn.Conv2d``: an API's names), except attributes the cell assigns (``self.conv1 = ...``: the
  student's). Renaming, to any name, rewording comments and reordering statements or cells change nothing.
  Written answers become word 4-grams.
* What the release's own cells contain is fingerprinted the same way and taken out: by content, not by names.
* A fingerprint weighs log((n + 1) / k) for one that k of the n students share: the one obvious way to write a
  line weighs little, a quirk that two students share weighs much. A pair's similarity is the weighted Jaccard of
  their fingerprints (what they share over what either has), all cells together.
* A pair is listed when its similarity stands far out from the class's: a robust z-score (distance from the
  median of all pairs, in units of their median absolute deviation) of at least ``Z_MIN``, and at least ``FLOOR``
  as well, so that a class whose pairs are all unlike lists nobody. A common style moves the median, not a pair.

``similarity.csv`` has the listed pairs, most alike first; ``similarity.html`` shows each pair's answers side by
side, cell by cell. Group members who handed in one identical file are not a pair.
"""
from __future__ import annotations

import builtins
import csv
import hashlib
import html
import io
import itertools
import keyword
import math
import re
import statistics
import tokenize
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .results import Result, atomic_write, spreadsheet_text

FLOOR = 0.5  # below this, two answers are not alike enough to look at, however unlike the rest of the class is
Z_MIN = 5.0  # how far out a pair must stand: in generated classes of 40, independent pairs reached 4-6, copies 11
MIN_SPREAD = 0.05  # a class too small or too alike for a spread: differences under this stand out from nothing
MIN_FINGERPRINTS = 12  # fewer: too little of their own to compare (an untouched release, a one-liner)
GRAM = 5  # tokens per code fingerprint: short enough to survive a change nearby, long enough to mean something
WORDS = 4  # words per written-answer fingerprint
EXTRA = "cells of their own"  # the key of the code cells a student added
_BUILTINS = frozenset(dir(builtins))
_REGEX_TOKENS = re.compile(r"(?P<comment>#[^\n]*)|(?P<string>'(?:\\.|[^'\\\n])*'|\"(?:\\.|[^\"\\\n])*\")"
                           r"|(?P<number>\d[\w.]*)|(?P<name>[^\W\d]\w*)|(?P<op>\S)")
_KINDS = {"string": tokenize.STRING, "number": tokenize.NUMBER, "name": tokenize.NAME, "op": tokenize.OP}

Answers = dict[str, tuple[str, frozenset[str]]]  # cell key -> (the cell's source, its fingerprints)


@dataclass
class Pair:
    a: str
    b: str
    score: float  # weighted Jaccard over all cells
    z: float  # how far out from the class's pairs, in robust standard deviations
    cells: dict[str, float]  # cell key -> that cell's weighted Jaccard


def _statements(source: str) -> list[list[tuple[int, str]]]:
    """The statements of *source* as (token type, text) lists, without comments and layout."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):  # a student's unfinished code: each physical line a statement
        return [[(_KINDS[m.lastgroup], m.group()) for m in _REGEX_TOKENS.finditer(line) if m.lastgroup != "comment"]
                for line in source.splitlines()]
    statements, current = [], []
    for token in tokens:
        if token.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
            statements.append(current)
            current = []
        elif token.type in _KINDS.values() or token.type == tokenize.ERRORTOKEN:
            current.append((token.type, token.string))
    return statements


def _owned_attributes(statements: list[list[tuple[int, str]]]) -> set[str]:
    """The attributes the cell assigns (``self.conv1 = ...``): the student's names, not an API's."""
    return {s[i][1] for s in statements for i in range(1, len(s) - 1)
            if s[i - 1][1] == "." and s[i][0] == tokenize.NAME and s[i + 1][1] == "="}


def _normalised(statement: list[tuple[int, str]], owned: set[str]) -> list[str]:
    """*statement* with strings made one placeholder and the student's own names numbered by first occurrence."""
    numbered, out, depth = {}, [], 0
    for i, (kind, text) in enumerate(statement):
        after = statement[i + 1][1] if i + 1 < len(statement) else ""
        before = statement[i - 1][1] if i else ""
        depth += (text in ("(", "[", "{")) - (text in (")", "]", "}")) if kind == tokenize.OP else 0
        if kind == tokenize.STRING:
            out.append('"s"')
        elif kind != tokenize.NAME or keyword.iskeyword(text) or (before == "." and text not in owned) \
                or (after == "=" and depth > 0) or (text in _BUILTINS and after == "("):
            out.append(text)
        else:
            out.append(f"v{numbered.setdefault(text, len(numbered))}")
    return out


def _hashes(grams) -> set[str]:
    return {hashlib.sha1("\0".join(gram).encode()).hexdigest()[:16] for gram in grams}


def code_fingerprints(source: str) -> frozenset[str]:
    """Token 5-grams of each statement of *source*, names numbered within the statement (see the module)."""
    statements = _statements(source)
    owned = _owned_attributes(statements)
    grams = []
    for statement in statements:
        tokens = ["code"] + _normalised(statement, owned)
        grams += [tokens] if len(tokens) <= GRAM else [tokens[i:i + GRAM] for i in range(len(tokens) - GRAM + 1)]
    return frozenset(_hashes(grams))


def text_fingerprints(source: str) -> frozenset[str]:
    words = ["text"] + re.findall(r"\w+", source.lower())
    return frozenset(_hashes([words] if len(words) <= WORDS else
                             [words[i:i + WORDS] for i in range(len(words) - WORDS + 1)]))


def _fingerprints(source: str, cell_type: str) -> frozenset[str]:
    return code_fingerprints(source) if cell_type == "code" else text_fingerprints(source)


def release_parts(release) -> tuple[dict[str, str], frozenset[str]]:
    """The release's answer cells (grade_id -> cell type) and the fingerprints of everything it contains."""
    solutions = {cell.metadata.nbgrader["grade_id"]: cell.cell_type for cell in release.cells
                 if cell.get("metadata", {}).get("nbgrader", {}).get("solution")}
    given = frozenset().union(*(_fingerprints(cell.source, cell.cell_type) for cell in release.cells
                                if cell.cell_type in ("code", "markdown") and isinstance(cell.source, str)))
    return solutions, given


def answers(nb, solutions: dict[str, str], given: frozenset[str]) -> Answers:
    """The student's answers in *nb*, cell by cell, less what the release contains (*given*)."""
    sources: dict[str, list[str]] = {}
    for cell in nb.cells:
        source, grade_id = cell.get("source"), cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if not isinstance(source, str):
            continue
        if grade_id in solutions:
            sources.setdefault(grade_id, []).append(source)
        elif cell.get("cell_type") == "code":  # their own cell, or a release cell (whose prints *given* cancels)
            sources.setdefault(EXTRA, []).append(source)
    found = {}
    for key, texts in sources.items():
        prints = frozenset().union(*(_fingerprints(text, solutions.get(key, "code")) for text in texts)) - given
        if prints:
            found[key] = ("\n\n".join(texts), prints)
    return found


def _weights(everyone: dict[str, Answers]) -> dict[tuple[str, str], float]:
    """(cell, fingerprint) -> log((n + 1) / k) where k of the n students have it: what many share weighs little."""
    shared = Counter((key, fp) for student in everyone.values() for key, (_, fps) in student.items() for fp in fps)
    return {item: math.log((len(everyone) + 1) / k) for item, k in shared.items()}


def _compare(a: Answers, b: Answers, weight: dict[tuple[str, str], float], mass_a: dict[str, float],
             mass_b: dict[str, float]) -> tuple[float, dict[str, float]]:
    """The weighted Jaccard of two students' answers, over all cells and cell by cell. The masses (cell -> the
    weight of all its fingerprints) make the union's weight the sum less the shared part: only the
    shared fingerprints are looked at, which is what keeps a class of hundreds (their pairs squared) quick."""
    both = either = 0.0
    cells = {}
    for key in a.keys() | b.keys():
        shared = sum(weight[key, fp] for fp in a[key][1] & b[key][1]) if key in a and key in b else 0.0
        union = mass_a.get(key, 0.0) + mass_b.get(key, 0.0) - shared
        cells[key] = shared / union
        both, either = both + shared, either + union
    return both / either, cells


def similar_pairs(everyone: dict[str, Answers]) -> list[Pair]:
    """The pairs that stand far out from the class's pairs, most alike first (see the module's docstring)."""
    compared = {s: a for s, a in everyone.items() if sum(len(fps) for _, fps in a.values()) >= MIN_FINGERPRINTS}
    weight = _weights(compared)
    mass = {s: {key: sum(weight[key, fp] for fp in fps) for key, (_, fps) in a.items()} for s, a in compared.items()}
    scored = [(a, b, *_compare(compared[a], compared[b], weight, mass[a], mass[b]))
              for a, b in itertools.combinations(sorted(compared), 2)]
    if not scored:
        return []
    scores = [score for _, _, score, _ in scored]
    median = statistics.median(scores)
    # 1.4826 times the median absolute deviation: the standard deviation, were the scores normally spread, but
    # not pulled up by the few copies that are what is looked for
    spread = max(1.4826 * statistics.median(abs(s - median) for s in scores), MIN_SPREAD)
    pairs = [Pair(a, b, score, (score - median) / spread, cells) for a, b, score, cells in scored]
    return sorted((p for p in pairs if p.score >= FLOOR and p.z >= Z_MIN), key=lambda p: (-p.score, p.a, p.b))


_STYLE = ("body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;width:100%;table-layout:fixed}"
          "td,th{border:1px solid #ccc;vertical-align:top;padding:4px;text-align:left}th.cell,td.cell{width:12em}"
          "pre{white-space:pre-wrap;margin:0;font-size:85%}")


def _pair_html(rank: int, pair: Pair, everyone: dict[str, Answers], order: list[str]) -> str:
    """One pair: a row per cell that either answered, most alike first, the two answers side by side."""
    a, b = everyone[pair.a], everyone[pair.b]
    rows = [f'<tr><th class="cell">cell (alike)</th><th>{html.escape(pair.a)}</th><th>{html.escape(pair.b)}</th></tr>']
    for key in sorted(pair.cells, key=lambda k: (-pair.cells[k], order.index(k))):
        sides = "".join(f"<td><pre>{html.escape(side.get(key, ('', ()))[0])}</pre></td>" for side in (a, b))
        rows.append(f'<tr><td class="cell">{html.escape(key)} ({pair.cells[key]:.2f})</td>{sides}</tr>')
    return (f'<h2 id="pair-{rank}">{rank}. {html.escape(pair.a)} and {html.escape(pair.b)}: similarity '
            f"{pair.score:.2f}, {pair.z:.1f} robust standard deviations above the class's median</h2>\n"
            f"<table>\n{chr(10).join(rows)}\n</table>")


def similarity_html(pairs: list[Pair], everyone: dict[str, Answers], order: list[str]) -> str:
    """The listed pairs' answers side by side; every student's text is escaped and the page runs no script."""
    head = ('<!DOCTYPE html>\n<html><head><meta charset="utf-8">\n<meta http-equiv="Content-Security-Policy" '
            "content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
            f"<title>Similar answers</title><style>{_STYLE}</style></head><body>\n<h1>Similar answers</h1>\n"
            f"<p>{len(pairs)} pair(s) of {len(everyone)} students whose answers are far more alike than the class's "
            "other pairs (names, comments and the order of statements and cells do not count; what the release "
            "contains and what many students write alike count little). Read each pair's answers before "
            "concluding anything: alike is not copied, and grades are unchanged.</p>\n")
    return head + "\n".join(_pair_html(rank, pair, everyone, order) for rank, pair in enumerate(pairs, 1)) + \
        "\n</body></html>\n"


def write_similarity(out: Path, results: list[Result], release, submitted: dict[str, Path]) -> str:
    """similarity.csv and similarity.html for the class's graded notebooks (*submitted*: student -> the file handed
    in); returns the summary's line. Group members who handed in one file are not a pair."""
    solutions, given = release_parts(release)
    everyone, files = {}, {}
    for result in results:
        path = submitted.get(result.student_id)
        if path is None or not path.is_file():
            continue
        try:
            everyone[result.student_id] = answers(nbformat.read(path, as_version=4), solutions, given)
        except Exception:  # noqa: BLE001 - a notebook nbformat cannot read has no answers to compare
            continue
        files[result.student_id] = path.read_bytes()
    grouped = {r.student_id for r in results if any(note.startswith("group submission with") for note in r.notes)}
    pairs = [p for p in similar_pairs(everyone) if not (p.a in grouped and p.b in grouped and files[p.a] == files[p.b])]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student_a", "student_b", "similarity", "z_score", "most_alike_cells"])
    for p in pairs:
        alike = "; ".join(key for key, score in sorted(p.cells.items(), key=lambda kv: -kv[1]) if score >= FLOOR)
        writer.writerow([spreadsheet_text(p.a), spreadsheet_text(p.b), f"{p.score:.2f}", f"{p.z:.1f}",
                         spreadsheet_text(alike)])
    atomic_write(out / "similarity.csv", buffer.getvalue())
    atomic_write(out / "similarity.html", similarity_html(pairs, everyone, [*solutions, EXTRA]))
    return (f"{out / 'similarity.csv'}: {len(pairs)} pair(s) far more alike than the rest of the class, side by side "
            f"in similarity.html, for a person to look at (grades are unchanged)")
