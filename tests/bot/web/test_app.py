"""The web console's app over a real SQLite file through Starlette's test client: every route
needs a login, roles, CSRF, login rate limits, cookie flags, logins ending server-side, the
audit log, the accounts CLI and `solace migrate`, and a study model that cannot load."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from bot.web.app import build_app
from bot.web.store import connection
from tests.bot.web.helpers import (
    BASE,
    PASSWORD,
    Console,
    client,
    csrf_of,
    login,
    web_cli,
)


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
    result = runner.invoke(web_cli(), ["user", "passwd", "mo", "--password-stdin", *args],
                           input="another long password\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert c.get("/queue", follow_redirects=False).status_code == 303
    assert login(client(app), "mo", "another long password").status_code == 303
    c2 = client(app, "max")
    assert runner.invoke(web_cli(), ["user", "disable", "max", *args]).exit_code == 0
    assert c2.get("/queue", follow_redirects=False).status_code == 303
    assert login(client(app), "max").status_code == 401


def test_user_add_cli_validates_and_hashes(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    runner = CliRunner()
    ok = runner.invoke(web_cli(), ["user", "add", "Nora", "--role", "moderator",
                                    "--password-stdin", "--db", str(db)], input="a good password\n")  # fmt: skip
    assert ok.exit_code == 0 and "nora (moderator) created" in ok.output
    short = runner.invoke(web_cli(), ["user", "add", "pat", "--role", "rater",
                                       "--password-stdin", "--db", str(db)], input="short\n")  # fmt: skip
    assert short.exit_code != 0 and "at least 10 characters" in short.output
    again = runner.invoke(web_cli(), ["user", "add", "nora", "--role", "admin",
                                       "--password-stdin", "--db", str(db)], input="a good password\n")  # fmt: skip
    assert again.exit_code != 0 and "already exists" in again.output
    with connection(db) as conn:
        digest = conn.execute("SELECT password_hash FROM web_accounts").fetchone()[0]
    assert digest.startswith("$argon2id$") and "a good password" not in digest
    listed = runner.invoke(web_cli(), ["user", "list", "--db", str(db)])
    assert "nora\tmoderator\tactive" in listed.output


def test_migrate_applies_the_console_schema(tmp_path: Path) -> None:
    from bot.migrate import migrate

    result = CliRunner().invoke(migrate, ["--db", str(tmp_path / "m.db")])
    assert result.exit_code == 0 and "w001_console" in result.output


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


def test_every_web_command_has_help() -> None:
    import click

    from bot.cli import cli
    from evaluation.cli import eval_group

    web = web_cli()

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
