"""The course in a real browser: JupyterLab started as `make lab` starts it, driven in headless Chromium.

Screenshots of every step land in test-artifacts/browser/ (git-ignored). `make browser` installs Debian's
Chromium; without it these tests skip and say so.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import nbformat
import pytest

from assignment_helpers import RELEASE_NB, answer_cells, nbgrader_meta, reference_answers
from autograde_fixtures import hostile_feedback_page
from resnet_course.quizzes import load_questions

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "browser"
WRITTEN_ANSWER = "Without shortcuts the gradient shrinks layer by layer, so the deep plain network barely learns."
NOTEBOOK = ".jp-NotebookPanel:visible"
LESSON = ROOT / "notebooks" / "05_plain_vs_residual.ipynb"
# Without these flags Chromium keeps trying to reach Google's services, which a closed network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: run `make setup`")
pytestmark = [pytest.mark.skipif(not CHROMIUM.exists(),
                                 reason=f"{CHROMIUM} is missing: `make browser` installs Debian's chromium"),
              pytest.mark.slow]  # a browser, and pages that nbgrader and the grader make first


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The address (with its token) of JupyterLab serving the repository, started by `make lab`."""
    port = free_port()
    # One torch thread per kernel, as the rest of the suite: two threads spin against another load on the machine
    # and made lesson 5 several times slower.
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path_factory.mktemp("runtime")),
           "RESNET_COURSE_THREADS": "1"}
    process = subprocess.Popen(["make", "--no-print-directory", "lab", f"PORT={port}"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    found, log = threading.Event(), []

    def read_log():
        for line in process.stdout:
            log.append(line)
            if re.search(rf"http://127\.0\.0\.1:{port}/\S*\?token=\w+", line):
                found.set()

    threading.Thread(target=read_log, daemon=True).start()
    try:
        assert found.wait(120), "JupyterLab did not start:\n" + "".join(log[-30:])
        token = re.search(r"\?token=(\w+)", "".join(log)).group(1)
        yield f"http://127.0.0.1:{port}", token
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def workdir():
    """A folder inside the served tree for the notebooks these tests edit; the course's own files stay as they are."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture
def page(browser, lab):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(300_000)  # hang guards only: a loaded machine may take minutes to start a kernel
    page = context.new_page()
    yield page
    context.close()


def open_notebook(page, lab, path):
    base, token = lab
    # ?reset starts from an empty workspace, so no tab from an earlier test is restored beside this one.
    page.goto(f"{base}/lab/tree/{path.relative_to(ROOT).as_posix()}?reset&token={token}")
    page.wait_for_selector(f"{NOTEBOOK} .jp-Cell")
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=300_000)
    dismiss_news_prompt(page)


def dismiss_news_prompt(page):
    no = page.get_by_role("button", name="No", exact=True)
    if no.count():
        no.first.click()


def menu(page, *labels):
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{labels[0]}$")).click()
    for label in labels[1:]:
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(label)}$")).click()


def run_all_and_save(page, path, timeout=1800):
    """Run All from the menu, wait for the kernel to finish, save, and read back what the browser saved. *timeout*
    only stops a hung run: how long a lesson takes is measured by make bench, not here."""
    menu(page, "Run", "Run All Cells")
    deadline, idle_polls = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        page.wait_for_timeout(1000)
        busy = page.locator(".jp-Notebook-ExecutionIndicator[data-status='busy']").count()
        pending = page.locator(".jp-InputPrompt", has_text="[*]").count()
        unrun = page.locator(".jp-InputPrompt", has_text="[ ]").count()
        failed = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count()
        if not busy and not pending and (not unrun or failed):
            break
        idle_polls = idle_polls + 1 if not busy and not pending else 0
        if idle_polls == 30:  # nothing started: the click did not reach the menu (a loaded machine, a dialog)
            dismiss_news_prompt(page)
            menu(page, "Run", "Run All Cells")
    else:
        raise AssertionError(f"{path.name} was still running after {timeout} s")
    page.keyboard.press("Control+s")
    page.wait_for_timeout(1500)
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code" and cell.source.strip()]
    assert all(cell.execution_count for cell in code), "some cells did not run"
    return nb


def errors_in(nb):
    return [f"{output.ename}: {output.evalue}" for cell in nb.cells if cell.cell_type == "code"
            for output in cell.outputs if output.output_type == "error"]


def type_into_cell(page, index, text):
    """Select the cell with the keyboard (JupyterLab may not render cells far off screen), then type."""
    page.locator(f"{NOTEBOOK} .jp-Cell").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Escape")
    for _ in range(index):
        page.keyboard.press("j")
    page.keyboard.press("Enter")
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    # insert_text types the text as one input event, as a paste would: the editor adds no auto-indentation.
    page.keyboard.insert_text(text)
    page.keyboard.press("Escape")


def validate(page):
    page.locator(f"{NOTEBOOK} .jp-NotebookPanel-toolbar").get_by_text("Validate").click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=1_800_000)  # a hang guard: validation runs the whole assignment
    text = dialog.inner_text()
    return text, dialog


def close_dialog(dialog):
    dialog.get_by_role("button").last.click()


def test_student_types_the_solution_runs_all_and_validates(page, lab, workdir):
    path = workdir / "residual_blocks.ipynb"
    shutil.copy(RELEASE_NB, path)
    open_notebook(page, lab, path)
    page.screenshot(path=workdir / "student-opened.png")

    nb = nbformat.read(path, as_version=4)
    solutions = reference_answers()
    for grade_id, cell in answer_cells(nb).items():
        type_into_cell(page, nb.cells.index(cell), solutions[grade_id])
    written = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "markdown" and nbgrader_meta(cell).get("solution")]
    for index in written:
        type_into_cell(page, index, WRITTEN_ANSWER)
    ran = run_all_and_save(page, path)
    page.screenshot(path=workdir / "student-ran-all.png", full_page=True)
    assert not errors_in(ran), errors_in(ran)
    for grade_id, cell in answer_cells(ran).items():
        assert cell.source.strip() == solutions[grade_id].strip(), f"{grade_id} was not typed as intended"
    assert all(ran.cells[index].source == WRITTEN_ANSWER for index in written)

    text, dialog = validate(page)
    page.screenshot(path=workdir / "student-validated.png")
    assert "Success! Your notebook passes all the tests." in text, text
    close_dialog(dialog)


def test_validate_reports_the_untouched_release_as_failing(page, lab, workdir):
    path = workdir / "residual_blocks_untouched.ipynb"
    shutil.copy(RELEASE_NB, path)
    open_notebook(page, lab, path)
    text, dialog = validate(page)
    page.screenshot(path=workdir / "untouched-validated.png")
    assert "Success" not in text and "failed" in text.lower(), text
    close_dialog(dialog)


def test_lesson_runs_shows_its_plots_and_checks_a_quiz(page, lab, workdir):
    path = workdir / LESSON.name
    shutil.copy(LESSON, path)
    open_notebook(page, lab, path)
    ran = run_all_and_save(page, path)
    assert not errors_in(ran), errors_in(ran)
    plots = page.locator(f"{NOTEBOOK} .jp-OutputArea-output img")
    assert plots.count() >= 1, "no plot was rendered"
    assert plots.first.evaluate("img => img.naturalWidth") > 100

    key = re.search(r'quiz\("([^"]+)"\)', "".join(c.source for c in ran.cells if c.cell_type == "code")).group(1)
    question = load_questions()[key]
    right = next(letter for letter in question.letters if question.check(letter).correct)
    card = page.locator(f"{NOTEBOOK} .widget-vbox", has_text=question.prompt[:40]).first
    card.scroll_into_view_if_needed()
    wrong = next(letter for letter in question.letters if letter != right)
    card.get_by_text(f"{wrong}. ", exact=False).first.click()
    card.get_by_role("button", name="Check").click()
    page.wait_for_timeout(500)
    assert "Hint" in card.inner_text()
    card.get_by_text(f"{right}. ", exact=False).first.click()
    card.get_by_role("button", name="Check").click()
    page.wait_for_timeout(500)
    card.screenshot(path=workdir / "lesson-quiz.png")
    assert "Correct!" in card.inner_text()
    page.screenshot(path=workdir / "lesson-ran-all.png", full_page=True)


def test_a_feedback_page_runs_no_student_script_and_renders_math_offline(browser, tmp_path):
    """A page from plain `nbgrader generate_feedback` of a notebook whose markdown and outputs try scripts, event
    handlers, javascript: links, frames, a refresh and a <base>; and one more script put into the page after it
    was cleaned, which only its Content-Security-Policy stops. The page fetches nothing, yet its math renders."""
    page_path = hostile_feedback_page(tmp_path / "course")
    text = page_path.read_text(encoding="utf-8")
    past_the_cleaner = page_path.with_name("past_the_cleaner.html")
    head, body_end, tail = text.rpartition("</body>")
    past_the_cleaner.write_text(f"{head}<script>window.__pwned = 'past the cleaner'</script>"
                                f"<img src=x onerror=\"window.__pwned = 'onerror'\">{body_end}{tail}")
    context = browser.new_context(offline=True)
    context.set_default_timeout(120_000)  # a hang guard only
    for path in (page_path, past_the_cleaner):
        page = context.new_page()
        requests = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(path.as_uri())
        page.wait_for_function("() => document.querySelectorAll('.MathJax_MathML math').length >= 3")
        page.screenshot(path=tmp_path / f"{path.stem}.png", full_page=True)
        assert page.evaluate("window.__pwned") is None
        assert page.title() == "mini" and page.url == path.as_uri()
        assert page.locator("h1#Residual-blocks").is_visible()
        assert page.locator("img[src^='data:image/png']").first.evaluate("img => img.naturalWidth") == 1
        assert [url for url in requests if not url.startswith(("file:", "data:", "about:"))] == []
        page.close()
    context.close()
