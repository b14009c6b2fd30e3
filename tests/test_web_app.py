"""The web console over a real SQLite file through Starlette's test client: every route needs a
login, roles, CSRF, login rate limits, cookie flags, the audit log, the queue's order and
states, labels and their export, /forget, and the accounts CLI."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from bot.audit import audit_connection
from bot.memory import open_memory
from bot.web.app import build_app
from bot.web.store import connection
from tests.audit_data import SECRET
from tests.web_helpers import PASSWORD, Console, consented_crisis, csrf_of, login, make_console

BASE = "http://127.0.0.1"
CONVERSATION_RE = re.compile(r'href="/conversations/([0-9a-f]{32})"')


@pytest.fixture
def console(tmp_path: Path) -> Console:
    return make_console(tmp_path, 60)


@pytest.fixture
def app(console: Console) -> Any:
    return build_app(console.settings, console.db)


def client(app: Any, name: str | None = None) -> TestClient:
    c = TestClient(app, base_url=BASE)
    if name is not None:
        assert login(c, name).status_code == 303
    return c


def sample_path(path: str) -> str:
    return (path.replace("{cid:str}", "0" * 32).replace("{slug:str}", "no-such")
            .replace("{sid:str}", "1").replace("{item:str}", "1"))  # fmt: skip


def app_routes(app: Any) -> list[tuple[str, str]]:
    out = []
    for route in app.routes:
        if isinstance(route, Mount) or not isinstance(route, Route):
            continue
        for method in sorted(route.methods or []):
            if method != "HEAD" and route.path not in ("/login",):
                out.append((method, sample_path(route.path)))
    return out


def test_every_route_without_a_login_goes_to_the_login_page(app: Any) -> None:
    routes = app_routes(app)
    assert len(routes) >= 20
    c = client(app)
    for method, path in routes:
        response = c.request(method, path, follow_redirects=False)
        assert response.status_code == 303, (method, path)
        assert response.headers["location"].startswith("/login"), (method, path)
    assert "Log in" in c.get("/queue").text  # followed: the login form


def test_roles_rater_gets_403_on_moderator_and_admin_routes(app: Any, console: Console) -> None:
    rater = client(app, "rita")
    for path in ("/queue", "/conversations/" + "0" * 32, "/labels/export.jsonl",
                 "/admin/audit", "/admin/studies/new", "/admin/accounts"):  # fmt: skip
        assert rater.get(path).status_code == 403, path
    token = csrf_of(rater.get("/studies").text)
    cid = next(iter(console.population.crisis_conversations))
    r = rater.post(f"/conversations/{cid}/action", data={"csrf_token": token, "action": "claim"})
    assert r.status_code == 403
    moderator = client(app, "mo")
    assert moderator.get("/studies").status_code == 403
    assert moderator.get("/admin/audit").status_code == 403
    assert moderator.get("/queue").status_code == 200
    assert client(app, "ada").get("/admin/audit").status_code == 200


def test_a_form_without_its_csrf_token_is_refused(app: Any, console: Console) -> None:
    c = client(app, "ada")
    cid = next(iter(console.population.crisis_conversations))
    token = csrf_of(c.get("/queue").text)
    for method, path in app_routes(app):
        if method == "POST":
            r = c.post(path, data={"action": "claim"})
            assert r.status_code == 403, path
            r = c.post(path, data={"action": "claim", "csrf_token": token[:-2] + "xx"})
            assert r.status_code == 403, path
    # Nothing happened, and with the token it works.
    with connection(console.db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM web_queue").fetchone()[0] == 0
    r = c.post(f"/conversations/{cid}/action", data={"action": "claim", "csrf_token": token})
    assert r.status_code == 200 and "Claimed." in r.text
    # The login form itself needs its token too.
    fresh = client(app)
    fresh.get("/login")
    r = fresh.post("/login", data={"name": "ada", "password": PASSWORD})
    assert r.status_code == 403


def test_cookie_flags_and_security_headers(console: Console) -> None:
    plain = client(build_app(console.settings, console.db))
    r = login(plain, "mo")
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    page = plain.get("/queue")
    assert "script-src" not in page.headers["content-security-policy"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    behind_tls = console.settings.model_copy(update={"web": console.settings.web.model_copy(
        update={"public_url": "https://mod.example.org"})})  # fmt: skip
    secure = TestClient(build_app(behind_tls, console.db), base_url="https://127.0.0.1")
    assert "secure" in login(secure, "mo").headers["set-cookie"].lower()


def test_wrong_passwords_are_rate_limited(app: Any, console: Console) -> None:
    c = client(app)
    for _ in range(console.settings.web.login_failures_per_account):
        assert login(c, "mo", "wrong password!").status_code == 401
    r = login(c, "mo")  # the right password, but the account is paused
    assert r.status_code == 429 and "Too many failed attempts" in r.text
    assert login(client(app), "ada").status_code == 303  # other accounts are not affected
    assert login(client(app), "nobody", "whatever it is").status_code == 401


def test_logout_ends_the_login_server_side(app: Any) -> None:
    c = client(app, "mo")
    cookie = c.cookies.get("solace_console")
    token = csrf_of(c.get("/queue").text)
    assert c.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    replay = TestClient(app, base_url=BASE, cookies={"solace_console": cookie})
    assert replay.get("/queue", follow_redirects=False).status_code == 303  # the old cookie


def test_disabled_account_and_password_change_end_logins(app: Any, console: Console) -> None:
    c = client(app, "mo")
    runner = CliRunner()
    args = ["--db", str(console.db)]
    result = runner.invoke(_web_cli(), ["user", "passwd", "mo", "--password-stdin", *args],
                           input="another long password\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert c.get("/queue", follow_redirects=False).status_code == 303
    assert login(client(app), "mo", "another long password").status_code == 303
    c2 = client(app, "max")
    assert runner.invoke(_web_cli(), ["user", "disable", "max", *args]).exit_code == 0
    assert c2.get("/queue", follow_redirects=False).status_code == 303
    assert login(client(app), "max").status_code == 401


def _web_cli() -> Any:
    from bot.web.cli import web

    return web


def test_user_add_cli_validates_and_hashes(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    runner = CliRunner()
    ok = runner.invoke(_web_cli(), ["user", "add", "Nora", "--role", "moderator",
                                    "--password-stdin", "--db", str(db)], input="a good password\n")  # fmt: skip
    assert ok.exit_code == 0 and "nora (moderator) created" in ok.output
    short = runner.invoke(_web_cli(), ["user", "add", "pat", "--role", "rater",
                                       "--password-stdin", "--db", str(db)], input="short\n")  # fmt: skip
    assert short.exit_code != 0 and "at least 10 characters" in short.output
    again = runner.invoke(_web_cli(), ["user", "add", "nora", "--role", "admin",
                                       "--password-stdin", "--db", str(db)], input="a good password\n")  # fmt: skip
    assert again.exit_code != 0 and "already exists" in again.output
    with connection(db) as conn:
        digest = conn.execute("SELECT password_hash FROM web_accounts").fetchone()[0]
    assert digest.startswith("$argon2id$") and "a good password" not in digest
    listed = runner.invoke(_web_cli(), ["user", "list", "--db", str(db)])
    assert "nora\tmoderator\tactive" in listed.output


def test_migrate_applies_the_console_schema(tmp_path: Path) -> None:
    from bot.memory_cli import migrate

    result = CliRunner().invoke(migrate, ["--db", str(tmp_path / "m.db")])
    assert result.exit_code == 0 and "w001_console" in result.output


def test_queue_is_most_serious_first_with_counts(app: Any, console: Console) -> None:
    c = client(app, "mo")
    page = c.get("/queue?show=all")
    ids = CONVERSATION_RE.findall(page.text)
    assert ids
    crisis = console.population.crisis_conversations
    first_other = next((i for i, cid in enumerate(ids) if cid not in crisis), len(ids))
    assert all(cid in crisis for cid in ids[:first_other])  # every crisis before the rest
    assert set(ids[:first_other]) == crisis & set(ids)
    assert re.search(rf"<b>{len(ids)}</b>all", page.text)


def test_queue_actions_states_notes_handover_and_escalation(app: Any, console: Console) -> None:
    cid = sorted(console.population.crisis_conversations)[0]
    mo, mx, ada = client(app, "mo"), client(app, "max"), client(app, "ada")

    def act(who: TestClient, action: str, **extra: str) -> str:
        token = csrf_of(who.get(f"/conversations/{cid}").text)
        r = who.post(f"/conversations/{cid}/action",
                     data={"csrf_token": token, "action": action, **extra})  # fmt: skip
        assert r.status_code == 200
        return re.search(r'class="flash"[^>]*>([^<]*)', r.text).group(1)  # type: ignore[union-attr]

    assert act(mo, "claim") == "Claimed."
    assert act(mx, "claim") == "Not done: already claimed by mo."
    with connection(console.db) as conn:
        max_id = conn.execute("SELECT id FROM web_accounts WHERE name = 'max'").fetchone()[0]
    assert act(mo, "handover", to_account=str(max_id), note="over to you") == "Handed over."
    assert act(mx, "note", note="called the <b>team</b>") == "Note added."
    assert act(mx, "escalate", note="") == "Not done: say why you escalate (the admin reads it)."
    assert act(mx, "escalate", note="needs a second opinion") == "Escalated to an admin."
    assert "<b>1</b>escalated" in ada.get("/queue").text
    page = ada.get(f"/conversations/{cid}").text
    assert "called the &lt;b&gt;team&lt;/b&gt;" in page and "needs a second opinion" in page
    assert act(ada, "resolve", note="handled") == "Escalation resolved."
    with connection(console.db) as conn:
        state = conn.execute("SELECT state, claimed_by FROM web_queue WHERE conversation_id = ?",
                             [cid]).fetchone()  # fmt: skip
        assert tuple(state) == ("reviewed", max_id)
        kinds = [r[0] for r in conn.execute("SELECT kind FROM web_notes ORDER BY id")]
    assert kinds == ["handover", "note", "escalation", "resolved"]
    assert cid not in CONVERSATION_RE.findall(mo.get("/queue").text)  # reviewed: not open


def test_a_reviewed_conversation_flagged_again_reopens(app: Any, console: Console) -> None:
    cid = sorted(console.population.crisis_conversations)[0]
    c = client(app, "mo")
    token = csrf_of(c.get(f"/conversations/{cid}").text)
    c.post(f"/conversations/{cid}/action", data={"csrf_token": token, "action": "review"})
    assert cid not in CONVERSATION_RE.findall(c.get("/queue").text)
    with connection(console.db) as conn:
        key = conn.execute("SELECT user_key FROM events WHERE conversation_id = ?",
                           [cid]).fetchone()[0]  # fmt: skip
        conn.execute("INSERT INTO events (user_key, conversation_id, kind, category, created_at)"
                     " VALUES (?, ?, 'guard', 'method', ?)", [key, cid, time.time() + 5])  # fmt: skip
    app.state.web.clock = lambda: time.time() + 10
    assert cid in CONVERSATION_RE.findall(c.get("/queue").text)
    assert "flagged again" in c.get(f"/conversations/{cid}").text


def test_overdue_conversations_are_highlighted(console: Console) -> None:
    quick = console.settings.model_copy(update={"web": console.settings.web.model_copy(
        update={"overdue_hours": 0.001})})  # fmt: skip
    c = client(build_app(quick, console.db), "mo")
    page = c.get("/queue").text
    assert 'class="item overdue' in page and 'class="count warn' in page
    slow = client(build_app(console.settings.model_copy(update={"web": console.settings.web
        .model_copy(update={"overdue_hours": 24 * 365})}), console.db), "mo")  # fmt: skip
    assert 'class="item overdue' not in slow.get("/queue").text


def test_labels_and_their_export_as_safety_cases(
    app: Any, console: Console, tmp_path: Path
) -> None:
    cid, plain, flagged = consented_crisis(console)
    c = client(app, "mo")
    token = csrf_of(c.get(f"/conversations/{cid}").text)

    def label(turn: int, decision: str, **extra: str) -> str:
        r = c.post(f"/conversations/{cid}/label",
                   data={"csrf_token": token, "turn_id": str(turn), "decision": decision, **extra})  # fmt: skip
        return re.search(r'class="flash"[^>]*>([^<]*)', r.text).group(1)  # type: ignore[union-attr]

    assert label(plain, "false_alarm").startswith("Not labelled: false alarm is for a flagged")
    assert label(plain, "missed").startswith("Not labelled: name the crisis category")
    assert label(plain, "missed", category="self_harm", style="indirect") == \
        "Labelled: crisis (self_harm), style indirect."  # fmt: skip
    assert label(flagged, "false_alarm") == "Labelled: not a crisis, style distress."
    assert label(flagged, "correct").startswith("Labelled: crisis (")  # the latest label wins
    exported = c.get("/labels/export.jsonl")
    assert exported.headers["content-type"].startswith("application/x-ndjson")
    cases = [json.loads(line) for line in exported.text.splitlines()]
    assert {(x["decision"], x["level"]) for x in cases} == {("missed", "crisis"),
                                                            ("correct", "crisis")}  # fmt: skip
    # The file is a case file `solace safety evaluate` reads and scores.
    out = tmp_path / "labels.jsonl"
    cli = CliRunner().invoke(_web_cli(), ["export-cases", "--out", str(out), "--db",
                                          str(console.db)])  # fmt: skip
    assert cli.exit_code == 0 and "2 cases (1 missed crises)" in cli.output
    assert out.stat().st_mode & 0o777 == 0o600
    from bot.safety_cli import safety

    evaluated = CliRunner().invoke(safety, ["evaluate", str(out)])
    assert evaluated.exit_code == 0, evaluated.output
    assert "recall" in evaluated.output


def test_labels_of_people_without_consent_are_not_exported(app: Any, console: Console) -> None:
    with audit_connection(console.db) as adb:
        row = adb.query(
            "SELECT t.conversation_id, t.turn_id FROM audit_turns t JOIN users u ON "
            "u.user_key = t.user_key WHERE t.role = 'user' AND t.flagged = 1 AND "
            "u.review_consent_at IS NULL LIMIT 1"
        )[0]
    c = client(app, "mo")
    page = c.get(f"/conversations/{row[0]}").text
    assert "labels are kept but not exported" in page
    c.post(f"/conversations/{row[0]}/label", data={"csrf_token": csrf_of(page),
           "turn_id": str(row[1]), "decision": "correct"})  # fmt: skip
    assert c.get("/labels/export.jsonl").text == ""


def test_every_view_and_action_is_in_the_audit_log(app: Any, console: Console) -> None:
    cid = sorted(console.population.crisis_conversations)[0]
    c = client(app, "mo")
    page = c.get(f"/conversations/{cid}").text
    c.post(f"/conversations/{cid}/action", data={"csrf_token": csrf_of(page), "action": "claim"})
    client(app, "rita").get("/queue")
    client(app).get("/queue")
    with connection(console.db) as conn:
        rows = [tuple(r) for r in conn.execute(
            "SELECT account, action, target, status FROM web_audit ORDER BY id")]  # fmt: skip
    assert ("mo", "conversation.view", cid, 200) in rows
    assert ("mo", "conversation.action", cid, 303) in rows
    assert ("rita", "queue.view", None, 403) in rows
    assert (None, "queue.view", None, 401) in rows
    assert ("mo", "login", None, 303) in rows
    ada = client(app, "ada")
    audit_page = ada.get(f"/admin/audit?target={cid}").text
    assert "conversation.view" in audit_page and "conversation.action" in audit_page


def test_forget_erases_queue_state_notes_and_labels(app: Any, console: Console) -> None:
    cid, plain, _ = consented_crisis(console)
    c = client(app, "mo")
    token = csrf_of(c.get(f"/conversations/{cid}").text)
    c.post(f"/conversations/{cid}/action", data={"csrf_token": token, "action": "claim"})
    c.post(f"/conversations/{cid}/action", data={"csrf_token": token, "action": "note",
                                                 "note": "a private remark"})  # fmt: skip
    c.post(f"/conversations/{cid}/label", data={"csrf_token": token, "turn_id": str(plain),
           "decision": "missed", "category": "suicide"})  # fmt: skip
    with connection(console.db) as conn:
        key = conn.execute("SELECT user_key FROM web_queue WHERE conversation_id = ?",
                           [cid]).fetchone()[0]  # fmt: skip
        before = {t: conn.execute(f"SELECT COUNT(*) FROM {t} WHERE user_key = ?", [key])
                  .fetchone()[0] for t in ("web_queue", "web_notes", "web_labels")}  # fmt: skip
    assert before == {"web_queue": 1, "web_notes": 1, "web_labels": 1}
    store = open_memory(console.db, SECRET)
    erasure = store.forget_user(key)
    store.db.close()
    deleted = erasure.deleted
    assert deleted["web_queue"] == 1 and deleted["web_notes"] == 1 and deleted["web_labels"] == 1
    assert erasure.wal_clean
    with connection(console.db) as conn:
        for table in ("web_queue", "web_notes", "web_labels"):
            assert conn.execute(f"SELECT COUNT(*) FROM {table} WHERE user_key = ?",
                                [key]).fetchone()[0] == 0  # fmt: skip
    assert b"a private remark" not in console.db.read_bytes()  # secure_delete + checkpoint
    assert c.get(f"/conversations/{cid}").status_code == 404


def test_web_tables_with_bot_user_rows_have_a_user_key(tmp_path: Path) -> None:
    """Tables about a bot user carry `user_key` (so /forget finds them); the others hold staff
    accounts, raters' own chats or data-set dialogues, never a bot user's data."""
    from bot.web.store import migrate_web

    db = tmp_path / "t.db"
    migrate_web(db)
    staff_or_study = {"web_keys", "web_accounts", "web_logins", "web_login_attempts",
                      "web_audit", "web_studies", "web_eval_sessions", "web_eval_turns",
                      "web_eval_answers", "web_rating_items", "web_ratings"}  # fmt: skip
    with connection(db) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'web_%'")}  # fmt: skip
        with_key = {t for t in tables if "user_key" in
                    {c[1] for c in conn.execute(f"PRAGMA table_info({t})")}}  # fmt: skip
    assert with_key == {"web_queue", "web_notes", "web_labels"}
    assert tables == with_key | staff_or_study


def test_the_daily_report_links_into_the_console(console: Console) -> None:
    from bot.report import collect_report
    from bot.report_render import render_html

    linked = console.settings.model_copy(update={"web": console.settings.web.model_copy(
        update={"public_url": "https://mod.example.org/"})})  # fmt: skip
    now = time.time()
    with audit_connection(console.db) as adb:
        data = collect_report(adb, linked, now - 86_400 * 8, now + 1, "weekly")
        plain = collect_report(adb, console.settings, now - 86_400 * 8, now + 1, "weekly")
    first = data["flagged"][0]
    cid = next(c for c in console.population.conversations if c.startswith(first["conversation"]))
    assert first["console_url"] == f"https://mod.example.org/conversations/{cid}"
    assert f'href="https://mod.example.org/conversations/{cid}"' in render_html(data)
    assert plain["flagged"][0]["console_url"] is None
    assert "open in the console" not in render_html(plain)


def test_every_web_command_has_help() -> None:
    import click

    from bot.cli import cli
    from evaluation.cli import eval_group

    web = _web_cli()

    def walk(group: click.Group) -> list[click.Command]:
        out: list[click.Command] = []
        for command in group.commands.values():
            out.append(command)
            if isinstance(command, click.Group):
                out += walk(command)
        return out

    commands = [*walk(web), eval_group.commands["human"]]
    assert len(commands) >= 10
    for command in commands:
        assert command.help and len(command.help) > 15, command.name
    result = CliRunner().invoke(cli, ["--help"])
    assert "web" in result.output


def test_retention_purges_old_queue_rows_notes_labels_and_access_log(
    app: Any, console: Console
) -> None:
    from bot.audit_tasks import purge_expired

    cid, plain, _ = consented_crisis(console)
    c = client(app, "mo")
    token = csrf_of(c.get(f"/conversations/{cid}").text)
    c.post(f"/conversations/{cid}/action", data={"csrf_token": token, "action": "note",
                                                 "note": "old remark"})  # fmt: skip
    c.post(f"/conversations/{cid}/label", data={"csrf_token": token, "turn_id": str(plain),
           "decision": "missed", "category": "abuse"})  # fmt: skip
    tables = ("web_queue", "web_notes", "web_labels", "web_audit")
    with audit_connection(console.db) as adb:
        purge_expired(adb, console.settings, time.time())  # nothing is old yet
        assert all(adb.scalar(f"SELECT COUNT(*) FROM {t}") for t in tables)
        later = time.time() + (console.settings.memory.retention_days + 1) * 86_400
        result = purge_expired(adb, console.settings, later)
        assert all(adb.scalar(f"SELECT COUNT(*) FROM {t}") == 0 for t in tables)
    assert result.detail["web_notes"] == 1 and result.detail["web_labels"] == 1


def test_a_model_that_cannot_load_gets_a_kind_message_not_a_crash(
    app: Any, console: Console, tmp_path: Path
) -> None:
    from bot.web import studies

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a model")
    with connection(console.db) as conn:
        studies.create_interactive(
            conn, "broken", "Broken", [{"name": "bad", "backend": "llama-cpp",
                                        "path": str(broken)}, {"name": "bad too",
                                        "backend": "llama-cpp", "path": str(broken)}],
            ["grief"], 1, None, time.time())  # fmt: skip
    c = client(app, "rita")
    token = csrf_of(c.get("/studies/broken").text)
    started = c.post("/studies/broken/start", data={"csrf_token": token})
    r = c.post(str(started.url) + "/message", data={"csrf_token": token, "text": "hello"})
    assert r.status_code == 200 and "This chatbot is not available right now" in r.text
    with connection(console.db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM web_eval_turns").fetchone()[0] == 0


def test_login_follows_only_local_paths(app: Any) -> None:
    c = client(app)
    token = csrf_of(c.get("/login").text)
    for target, expected in (("/queue?show=all", "/queue?show=all"), ("//evil.example", "/"),
                             ("https://evil.example/", "/"), ("/\\evil.example", "/")):  # fmt: skip
        c.cookies.clear()
        token = csrf_of(c.get("/login").text)
        r = c.post("/login", data={"name": "mo", "password": PASSWORD, "csrf_token": token,
                                   "next": target}, follow_redirects=False)  # fmt: skip
        assert r.headers["location"] == expected, target
