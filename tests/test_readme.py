"""The README's promises point at things that exist."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
MAKEFILE = (ROOT / "Makefile").read_text()


def test_setup_is_exactly_the_two_commands():
    section = README.split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make lab", "make test"]


def test_every_make_target_the_readme_names_exists():
    targets = set(re.findall(r"^([a-z-]+):", MAKEFILE, re.M))
    named = set(re.findall(r"`make ([a-z-]+)", README)) | set(re.findall(r"^make ([a-z-]+)", README, re.M))
    assert named and named <= targets, f"README names {sorted(named - targets)}, which the Makefile lacks"


def test_binder_and_colab_links_open_files_of_this_repository():
    binder = re.search(r"mybinder\.org/v2/gh/[\w-]+/[\w-]+/main\?urlpath=lab/tree/([\w./-]+)\)", README).group(1)
    assert (ROOT / binder).exists(), f"the Binder link opens {binder}, which does not exist"
    colab = re.findall(r"colab\.research\.google\.com/github/[\w-]+/[\w-]+/blob/main/([\w./-]+)\)", README)
    assert colab and all((ROOT / path).exists() for path in colab), colab


def test_ci_calls_the_readme_test_command():
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.M)


def test_the_worked_example_of_probes_and_judges_is_the_tested_one():
    """docs/instructors.md shows the mini course's probes and judges, which the grading tool's tests grade with."""
    from autograde_fixtures import MINI_JUDGES, MINI_PROBES

    guide = (ROOT / "docs" / "instructors.md").read_text()
    shown = dict(re.findall(r"```python\n# source/mini/grading/(\w+\.py)\n(.*?)```", guide, re.S))
    assert shown == {"probes.py": MINI_PROBES, "judges.py": MINI_JUDGES}
