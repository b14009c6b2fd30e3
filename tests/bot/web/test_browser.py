"""The web console in a real browser: Debian's Chromium driven by Playwright (the system browser
through `executable_path`; Playwright never downloads one) against the real app served by
uvicorn on loopback, over a real SQLite file.

A moderator logs in, works the queue and labels a message; raters run an A/B study end to end
(echo backend, and once the real SmolLM2 GGUF) and a 0-3 rating study; an admin reads the
results. User text with markup is shown as text and never runs. Every page is screenshot at
desktop and phone width into `test-artifacts/web/` (or $SOLACE_TEST_ARTIFACTS), and at phone
width no page scrolls sideways.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.bot.audit.audit_data import INJECTION
from tests.bot.web.helpers import PASSWORD, Console, consented_crisis, make_console
from tests.paths import FIXTURES, ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
]  # fmt: skip
ARTIFACTS = Path(os.environ.get("SOLACE_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "web"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
FIXTURE_DIALOGUES = FIXTURES / "esconv_hf_split.json"


class LiveServer:
    """The app under uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the console did not start")
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def _missing(why: str) -> NoReturn:
    """Skip on a developer machine; in CI (.ci/run sets CI=true) the browser tests must run."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{why}: CI must run the browser tests", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium through Playwright; skips with a reason when either is absent
    (fails in CI)."""
    if not Path(CHROMIUM).is_file():
        _missing("chromium is not installed (scripts/install-system-deps.sh installs it)")
    try:
        from playwright import sync_api
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def console(tmp_path: Path) -> Console:
    return make_console(tmp_path, 60)


@pytest.fixture
def live(console: Console) -> Iterator[str]:
    from bot.web.app import build_app

    with LiveServer(build_app(console.settings, console.db)) as url:
        yield url


def new_page(browser: Any, base: str) -> Any:
    """A fresh browser context (its own cookies) at desktop size."""
    context = browser.new_context(viewport=DESKTOP, base_url=base, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.dialogs = []  # type: ignore[attr-defined]
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))  # type: ignore[attr-defined]
    return page


def shot(page: Any, name: str, fits: tuple[str, ...] = ()) -> None:
    """Screenshots at desktop and phone width; at phone width nothing scrolls sideways, and
    the boxes named in `fits` show all of their content without scrolling inside."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}-desktop.png", full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=ARTIFACTS / f"{name}-phone.png", full_page=True)
    wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    hidden = {
        selector: page.locator(selector).evaluate("e => e.scrollWidth - e.clientWidth")
        for selector in fits
    }
    page.set_viewport_size(DESKTOP)
    assert wide <= 1, f"{name}: {wide}px wider than a phone screen"
    assert all(v <= 1 for v in hidden.values()), f"{name}: content scrolls inside {hidden}"


def log_in(page: Any, name: str) -> None:
    page.goto("/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    submit(page, "button:has-text('Log in')")
    page.wait_for_load_state()


def submit(page: Any, selector: str) -> None:
    """Click something that loads a new page, and wait for that page (not the old one)."""
    with page.expect_navigation():
        page.click(selector)


def flash(page: Any) -> str:
    return str(page.inner_text(".flash"))


def test_moderator_works_the_queue_and_labels_a_message(browser: Any, live: str,
                                                        console: Console) -> None:  # fmt: skip
    page = new_page(browser, live)
    page.goto("/queue")
    assert page.url.startswith(f"{live}/login")  # no session: the login page
    shot(page, "login")
    log_in(page, "mo")
    assert page.url == f"{live}/queue"
    assert page.locator(".item").count() > 0 and "crisis screen" in page.inner_text(
        ".item >> nth=0"
    )
    shot(page, "queue")

    cid, plain, _ = consented_crisis(console)
    page.goto(f"/conversations/{cid}")
    submit(page, "button:has-text('Claim')")
    assert flash(page) == "Claimed."
    page.fill("textarea[name=note]", "Checked in with the team lead.")
    submit(page, "button:has-text('Add note')")
    assert flash(page) == "Note added."
    page.click(f"#turn-{plain} summary")  # the label form folds away under each message
    form = page.locator(f"#turn-{plain} form.label-form")
    form.locator("select[name=decision]").select_option("missed")
    form.locator("select[name=category]").select_option("suicide")
    form.locator("select[name=style]").select_option("indirect")
    with page.expect_navigation():
        form.locator("button:has-text('Label')").click()
    assert flash(page) == "Labelled: crisis (suicide), style indirect."
    assert "Label: missed · suicide · indirect · by mo" in page.inner_text(f"#turn-{plain}")
    shot(page, "conversation")
    submit(page, "button:has-text('Mark reviewed')")
    assert flash(page) == "Marked reviewed."

    page.goto("/queue?show=reviewed")
    assert cid[:8] in page.inner_text(".queue")
    with page.expect_download() as download:
        page.click("text=Download labelled messages")
    cases = [json.loads(x) for x in Path(download.value.path()).read_text().splitlines()]
    assert [(c["decision"], c["level"], c["category"]) for c in cases] == [
        ("missed", "crisis", "suicide")
    ]
    page.goto("/studies")
    assert "Not allowed" in page.inner_text("h1")  # a moderator is not a rater
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_markup_in_user_text_is_shown_as_text_and_never_runs(browser: Any, live: str,
                                                             console: Console) -> None:  # fmt: skip
    from bot.audit.store import audit_connection

    with audit_connection(console.db) as adb:
        cid = adb.scalar(
            "SELECT conversation_id FROM audit_turns WHERE text LIKE '%<script>%' AND "
            "conversation_id IN (SELECT conversation_id FROM events) LIMIT 1"
        )
    assert cid is not None, "the population has a flagged conversation with the injection"
    page = new_page(browser, live)
    log_in(page, "mo")
    page.goto(f"/conversations/{cid}")
    page.wait_for_timeout(500)  # give an injected handler every chance to fire
    text = page.inner_text("main")
    assert INJECTION in text  # visible, literally, as the person wrote it
    assert page.locator("main script, main img, .turn iframe").count() == 0
    assert page.evaluate("typeof window.alert") == "function" and page.dialogs == []  # type: ignore[attr-defined]
    shot(page, "conversation-with-markup")


def _create_ab_study(page: Any, slug: str, models: list[dict[str, str]], min_turns: int) -> None:
    page.goto("/admin/studies/new?kind=interactive")
    page.fill("input[name=slug]", slug)
    page.fill("input[name=title]", "Talking about a hard week")
    for i, model in enumerate(models):
        page.fill(f"input[name=name_{i}]", model["name"])
        page.select_option(f"select[name=backend_{i}]", model["backend"])
        if model.get("path"):
            page.fill(f"input[name=path_{i}]", model["path"])
    page.fill("textarea[name=issues]", "I lost my job last week\nMy best friend moved away")
    page.fill("input[name=min_turns]", str(min_turns))
    submit(page, "button:has-text('Create and open')")
    assert flash(page) == f"Study {slug} created and open to raters."


def _talk_and_answer(page: Any, slug: str, messages: list[str], choice: str) -> list[str]:
    """One rater's whole session, answering every question with `choice` ("A", "B" or "tie");
    returns the reply each model gave to the first message."""
    page.goto("/studies")
    submit(page, f"a[href='/studies/{slug}']")
    submit(page, "button:has-text('Start')")
    replies = []
    for _ in range(2):
        letter = page.inner_text("h1").removeprefix("Chatbot ").strip()
        for text in messages:
            page.fill("textarea[name=text]", text)
            submit(page, "button:has-text('Send')")
        replies.append(page.inner_text(".chat .turn.assistant .text >> nth=0"))
        shot(page, f"chat-{slug}-{letter}")
        submit(page, "button:has-text('Done with')")
    assert page.inner_text("h1") == "Compare the chatbots"
    for fieldset in page.locator("fieldset").all():
        fieldset.locator(f"input[value='{choice}']").check()
    shot(page, f"questions-{slug}")
    submit(page, "button:has-text('Submit my answers')")
    assert page.inner_text("h1") == "Thank you"
    return replies


def test_an_ab_study_end_to_end_with_the_echo_backend(browser: Any, live: str,
                                                      console: Console) -> None:  # fmt: skip
    admin = new_page(browser, live)
    log_in(admin, "ada")
    _create_ab_study(admin, "echo-week", [{"name": "echo first", "backend": "echo"},
                                          {"name": "echo second", "backend": "echo"}], 2)  # fmt: skip
    shot(admin, "results-empty")
    rita, ravi = new_page(browser, live), new_page(browser, live)
    log_in(rita, "rita")
    shot(rita, "studies")
    hostile = "<img src=x onerror=\"document.title='pwned'\"> I feel <b>awful</b>"
    replies = _talk_and_answer(rita, "echo-week", [hostile, "Thanks for listening."], "A")
    assert all(r.startswith("You said:") for r in replies)  # the echo backend, via the engine
    assert hostile in replies[0] and rita.title() != "pwned"
    log_in(ravi, "ravi")
    _talk_and_answer(ravi, "echo-week", ["hello", "it has been a rough week"], "tie")

    admin.goto("/studies/echo-week/results")
    table = admin.inner_text("table.results >> nth=0")
    assert "echo first vs echo second" in table and "n = 2" in table
    fluency = admin.inner_text("table.results >> nth=0 >> tr:has-text('Fluency')")
    assert "50%" in fluency  # one tie in two sessions
    assert "vs LLaMA-ESConv" in admin.inner_text("table.results >> nth=1")  # the paper beside
    shot(admin, "results-ab", fits=(".table-wrap >> nth=0", ".table-wrap >> nth=1",
                                    ".table-wrap >> nth=2"))  # fmt: skip
    from click.testing import CliRunner

    from evaluation.cli import eval_group

    out = CliRunner().invoke(eval_group, ["human", "echo-week", "--db", str(console.db)])
    assert (
        out.exit_code == 0 and "| Fluency |" in out.output and "2 finished sessions" in out.output
    )


def _run_dir(tmp: Path) -> Path:
    """A run of dialogue-level generations, written here (our own text)."""
    run = tmp / "run-dialogue"
    run.mkdir()
    rows = []
    for d in range(2):
        for k, (seeker, reply) in enumerate([("I can't focus at work.", "That sounds draining."),
                                             ("My manager noticed.", "How did that feel?")]):  # fmt: skip
            rows.append({"key": f"t:{d}#{2 * k + 1}", "dialogue_id": f"t:{d}",
                         "turn_index": 2 * k + 1, "mode": "dialogue", "messages": [],
                         "seeker_turns": [seeker], "reference": "-", "generated": reply})  # fmt: skip
    (run / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_a_rating_study_with_fleiss_kappa(browser: Any, live: str, console: Console,
                                          tmp_path: Path) -> None:  # fmt: skip
    admin = new_page(browser, live)
    log_in(admin, "ada")
    admin.goto("/admin/studies/new?kind=rating")
    admin.fill("input[name=slug]", "quality")
    admin.fill("textarea[name=sources]", f"{FIXTURE_DIALOGUES} 2\nrun:{_run_dir(tmp_path)} 2")
    admin.fill("input[name=raters_per_item]", "2")
    submit(admin, "button:has-text('Create and open')")
    assert flash(admin) == "Study quality created and open to raters."
    for name, score in (("rita", "3"), ("ravi", "2")):
        page = new_page(browser, live)
        log_in(page, name)
        page.goto("/studies/quality")
        for n in range(4):
            assert page.locator(".chat .turn").count() >= 2
            if n == 0:
                assert "0 of 4 dialogues rated by you" in page.inner_text("main")
                shot(page, "rate")
            for fieldset in page.locator("fieldset").all():
                value = score if n < 3 else "3"  # both give 3 on the last dialogue
                fieldset.locator(f"input[value='{value}']").check()
            submit(page, "button:has-text('Save and next')")
        assert "Nothing left for you to rate" in page.inner_text("main")
    admin.goto("/studies/quality/results")
    assert "4 dialogues · 2 raters (2 wanted per dialogue)" in admin.inner_text("main")
    heads = admin.inner_text("table.results >> nth=0 >> tr >> nth=0")
    assert (
        "esconv_hf_split.json" in heads and "run run-dialogue" in heads and heads.split()[-1] == "n"
    )
    row = admin.inner_text("table.results >> nth=0 >> tr:has-text('Coherence')")
    # Per aspect: 3 dialogues rated (3, 2), one (3, 3): P-bar = 1/4, p_2 = 3/8, p_3 = 5/8,
    # P_e = 34/64, kappa = (1/4 - 17/32) / (15/32) = -0.60.
    assert "-0.60" in row
    shot(admin, "results-rating", fits=(".table-wrap >> nth=0", ".table-wrap >> nth=1"))
    from click.testing import CliRunner

    from evaluation.cli import eval_group

    out = CliRunner().invoke(eval_group, ["human", "quality", "--db", str(console.db)])
    assert out.exit_code == 0, out.output
    coherence = next(line for line in out.output.splitlines() if line.startswith("| Coherence"))
    assert "-0.60" in coherence and "The paper's Table 4" in out.output
    assert "4 dialogues, 2 raters" in out.output
    missing = CliRunner().invoke(eval_group, ["human", "no-such", "--db", str(console.db)])
    assert missing.exit_code != 0 and "no study named 'no-such'" in missing.output


@pytest.mark.slow
def test_an_ab_study_with_the_real_model(browser: Any, console: Console,
                                         smollm2_gguf: Path) -> None:  # fmt: skip
    from bot.web.app import build_app

    settings = console.settings.model_copy(update={"generation": console.settings.generation
        .model_copy(update={"max_new_tokens": 48, "seed": 7, "holdback_chars": 48})})  # fmt: skip
    with LiveServer(build_app(settings, console.db)) as live:
        admin = new_page(browser, live)
        log_in(admin, "ada")
        _create_ab_study(admin, "real-model", [
            {"name": "SmolLM2 base", "backend": "llama-cpp", "path": str(smollm2_gguf)},
            {"name": "echo", "backend": "echo"}], 1)  # fmt: skip
        rater = new_page(browser, live)
        rater.set_default_timeout(180_000)
        log_in(rater, "rita")
        replies = _talk_and_answer(rater, "real-model",
                                   ["I have felt lonely since I moved to a new city."], "A")  # fmt: skip
        real = [r for r in replies if not r.startswith("You said:")]
        assert len(real) == 1 and len(real[0].split()) >= 3  # the model answered, via the engine
        admin.goto("/studies/real-model/results")
        models = admin.inner_text("table >> nth=2")
        assert f"llama-cpp: {smollm2_gguf}" in models
        shot(admin, "results-real-model")
