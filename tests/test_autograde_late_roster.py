"""Late work and rosters, piece by piece: the course's late-penalty plugin as nbgrader loads it, the extensions
file, and the roster files of each kind (the whole-class runs through the CLI are in test_autograde_lms.py)."""
from datetime import datetime, timezone

import pytest
from nbgrader.preprocessors import AssignLatePenalties
from traitlets.config import Config

from autograde import AutogradeError
from autograde.late import LatePenalty, late_penalty, read_extensions
from autograde.roster import Member, read_roster, remembered

HOUR, DAY = 3600, 86400


@pytest.mark.parametrize("seconds_late, expected", [
    (0, 0.0), (-5, 0.0),
    (10 * 60, 0.0),  # within the 15 minutes' grace
    (20 * 60, 1.0),  # after it: counted from the due date, one day started
    (DAY, 1.0), (DAY + 1, 2.0),  # a second past a whole day starts the next
    (10 * DAY, 5.0),  # capped at half of the score
])
def test_percent_per_day_with_grace_and_cap(seconds_late, expected):
    assert late_penalty(10.0, seconds_late, "day", 10, 0, 50, 15) == expected


def test_points_per_hour_never_take_more_than_the_score():
    assert late_penalty(4.0, 2.5 * HOUR, "hour", 0, 0.5, 100, 0) == 1.5  # three hours started
    assert late_penalty(1.0, 30 * HOUR, "hour", 0, 0.5, 100, 0) == 1.0
    assert late_penalty(0.0, 30 * HOUR, "hour", 10, 1, 100, 0) == 0.0


def _plugin(**options) -> LatePenalty:
    """The plugin as nbgrader makes it: AssignLatePenalties.plugin_class by name, options from the config."""
    config = Config()
    config.AssignLatePenalties.plugin_class = "autograde.late.LatePenalty"
    for name, value in options.items():
        setattr(config.LatePenalty, name, value)
    preprocessor = AssignLatePenalties(config=config)
    preprocessor.init_plugin()
    return preprocessor.plugin_inst


def test_nbgrader_loads_the_plugin_with_its_options():
    plugin = _plugin(per="hour", points_per_period=1.0, grace_minutes=5)
    assert isinstance(plugin, LatePenalty)
    assert plugin.late_submission_penalty("s", 6.0, 4 * 60) == 0.0
    assert plugin.late_submission_penalty("s", 6.0, HOUR + 60) == 2.0
    assert _plugin(percent_per_period=50, penalty_method="zero").late_submission_penalty("s", 6.0, 60) == 6.0


def test_a_negative_option_is_refused():
    with pytest.raises(Exception, match="cannot be negative"):
        _plugin(percent_per_period=-10)


def test_extensions_file(tmp_path):
    path = tmp_path / "extensions.csv"
    path.write_text("student_id,due date\nzoe,2026-03-03 12:00+00:00\n\nJosé,2026-03-04T09:30Z\n", encoding="utf-8")
    assert read_extensions(path) == {"zoe": datetime(2026, 3, 3, 12, tzinfo=timezone.utc),
                                     "José": datetime(2026, 3, 4, 9, 30, tzinfo=timezone.utc)}
    path.write_text("zoe,2026-03-03 12:00\n")  # no header, and local time
    assert read_extensions(path)["zoe"] == datetime(2026, 3, 3, 12).astimezone()


CANVAS_EXPORT = """\ufeffStudent,ID,SIS User ID,SIS Login ID,Section,Mini (123),Current Score
    Points Possible,,,,,4,(read only)
"Ångström, Zoë",90001,s1,zoe,Section A,3,75
"Student, Test",99999,,,Section A,,
"de la Cruz, José María",90002,s2,jose,"Section A, Section B",,
"""
MOODLE_WORKSHEET = """Identifier,Full name,Email address,Status,Grade,Maximum Grade,Grade can be changed,Last modified (submission),Last modified (grade),Feedback comments
Participant 1234501,Zoë Ångström,zoe@example.org,Submitted for grading,,4.00,Yes,"Monday, 2 March 2026, 9:00 AM",-,
Participant 1234502,José María de la Cruz,jose@example.org,No submission,,4.00,Yes,-,-,
"""
BLACKBOARD_DOWNLOAD = ('"Last Name"\t"First Name"\t"Username"\t"Student ID"\t"Last Access"\t"Availability"\r\n'
                       '"Ångström"\t"Zoë"\t"zangstrom"\t"0042"\t"2026-03-01"\t"Yes"\r\n'
                       '"de la Cruz"\t"José María"\t"jm_delacruz"\t"0043"\t"2026-03-01"\t"Yes"\r\n')


@pytest.mark.parametrize("text, encoding, expected", [
    (CANVAS_EXPORT, "utf-8", [Member("90001", "Ångström, Zoë", "canvas"),
                              Member("90002", "de la Cruz, José María", "canvas")]),
    (MOODLE_WORKSHEET, "utf-8", [Member("1234501", "Zoë Ångström", "moodle"),
                                 Member("1234502", "José María de la Cruz", "moodle")]),
    (BLACKBOARD_DOWNLOAD, "utf-16", [Member("zangstrom", "Zoë Ångström", "blackboard"),
                                     Member("jm_delacruz", "José María de la Cruz", "blackboard")]),
    ("name,Student_ID\nZoë,zoe\n,jose\n", "utf-8", [Member("zoe", "Zoë"), Member("jose", "")]),
])
def test_roster_kinds(tmp_path, text, encoding, expected):
    path = tmp_path / "roster.csv"
    path.write_bytes(text.encode(encoding))
    assert read_roster(path) == expected


@pytest.mark.parametrize("reader, text, message", [
    (read_extensions, "zoe,next tuesdayish\n", "row 1: not a date and time"),  # data, unless its words say header
    (read_extensions, "student,due\nzoe\n", "row 1: expected a student id and a due date"),
    (read_extensions, "zoe,2026-03-03\nzoe,2026-03-05\n", "two due dates for zoe"),
    (read_roster, "first,last\nZoë,Ångström\n", "not a roster"),
    (read_roster, "student_id,name\n", "lists no student"),
    (read_roster, "student_id\nzoe\nZOE\n", "ZOE is listed twice"),
])
def test_a_bad_file_is_refused_with_what_is_wrong(tmp_path, reader, text, message):
    path = tmp_path / "class.csv"
    path.write_text(text)
    with pytest.raises(AutogradeError, match=message):
        reader(path)


def test_the_roster_is_remembered_until_another_replaces_it(tmp_path):
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    first.write_text("student_id\nzoe\njose\n")
    second.write_text("student_id\nmary\n")
    work = tmp_path / "work"
    work.mkdir()
    assert remembered(work, None) is None
    assert [m.student_id for m in remembered(work, first)] == ["zoe", "jose"]
    first.unlink()
    assert [m.student_id for m in remembered(work, None)] == ["zoe", "jose"]
    assert [m.student_id for m in remembered(work, second)] == ["mary"]
    assert [m.student_id for m in remembered(work, None)] == ["mary"]

