"""deploy/compose.webhook.yaml and deploy/Caddyfile.webhook: Telegram webhook mode behind Caddy.

Structural checks always run (the overlay merged onto compose.yaml passes the compose-spec parser;
the bot's webhook settings load; Caddy forwards exactly the webhook path to the bot's port). With
a `caddy` binary on PATH, the Caddyfile is also adapted by Caddy itself, and the real Caddy runs in
front of the real bot: the update is answered through it, a body over 1 MB gets 413, other paths
404, and a wrong secret still gets the bot's own 403.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.test_deploy_files import DEPLOY, VAR_RE, env_example

OVERLAY = DEPLOY / "compose.webhook.yaml"
CADDYFILE = DEPLOY / "Caddyfile.webhook"
DOMAIN = "bot.example.org"
# ${VAR:?message}: required variables (VAR_RE covers ${VAR} and ${VAR:-default}).
REQUIRED_RE = re.compile(r"\$\{([A-Z0-9_]+):\?[^}]*\}")


def _interpolate(text: str) -> str:
    shown = env_example()
    text = REQUIRED_RE.sub(lambda m: DOMAIN if m.group(1) == "WEBHOOK_DOMAIN" else "x", text)
    return VAR_RE.sub(lambda m: shown.get(m.group(1)) or "", text)


def _merged() -> dict[str, Any]:
    """compose.yaml with the overlay merged as `docker compose -f a -f b` merges mappings."""
    base = yaml.safe_load(_interpolate((DEPLOY / "compose.yaml").read_text()))
    overlay = yaml.safe_load(_interpolate(OVERLAY.read_text()))
    for name, service in overlay["services"].items():
        target = base["services"].setdefault(name, {})
        for key, value in service.items():
            if isinstance(value, dict) and isinstance(target.get(key), dict):
                target[key] = {**target[key], **value}
            else:
                target[key] = value
    base.setdefault("volumes", {}).update(overlay.get("volumes") or {})
    return base


def _bot_webhook_env() -> dict[str, str]:
    env = yaml.safe_load(_interpolate(OVERLAY.read_text()))["services"]["bot"]["environment"]
    return {k: str(v) for k, v in env.items()}


def test_overlay_follows_the_compose_spec() -> None:
    from compose_spec import PyCompose

    document = _merged()
    parsed = PyCompose.from_json(json.dumps(document))
    assert "proxy" in parsed.service_names()
    proxy = document["services"]["proxy"]
    assert proxy["image"].startswith("caddy:") and proxy["image"] != "caddy:latest"
    assert proxy["profiles"] == document["services"]["bot"]["profiles"]
    assert "ports" not in document["services"]["bot"]  # only the proxy is published


def test_bot_settings_of_the_overlay_load(clean_env: pytest.MonkeyPatch) -> None:
    from bot.config import Settings

    for name, value in _bot_webhook_env().items():
        clean_env.setenv(name, value)
    tg = Settings().telegram
    assert tg.mode == "webhook" and tg.webhook_url == f"https://{DOMAIN}{tg.webhook_path}"
    assert tg.webhook_listen == "0.0.0.0"


def test_required_variables_are_documented() -> None:
    used = set(REQUIRED_RE.findall(OVERLAY.read_text()))
    assert used == {"WEBHOOK_DOMAIN"} and used <= set(env_example())


def test_caddy_forwards_only_the_webhook_path_to_the_bot_port() -> None:
    env = _bot_webhook_env()
    text = CADDYFILE.read_text()
    assert f"path {env['SOLACE_TELEGRAM__WEBHOOK_PATH']}\n" in text
    assert f"reverse_proxy bot:{env['SOLACE_TELEGRAM__WEBHOOK_PORT']}\n" in text
    assert "max_size 1MB" in text and "respond 404" in text


def _caddy() -> str:
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("no caddy binary here (scripts/install-system-deps.sh installs it)")
    return caddy


def test_caddy_adapts_the_caddyfile() -> None:
    result = subprocess.run(
        [_caddy(), "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "WEBHOOK_DOMAIN": DOMAIN},
    )
    assert result.returncode == 0, result.stderr
    config = json.dumps(json.loads(result.stdout))
    assert '"max_size": 1000000' in config and '"dial": "bot:8443"' in config


async def test_real_caddy_in_front_of_the_real_bot(memory, tmp_path: Path) -> None:
    """The shipped Caddyfile with only its address and upstream moved to loopback (no TLS)."""
    from tests.bot.adapters.helpers import stored_texts
    from tests.servers.rigs import free_port, telegram_rig, webhook_section

    caddy = _caddy()
    bot_port, proxy_port = free_port(), free_port()
    path = _bot_webhook_env()["SOLACE_TELEGRAM__WEBHOOK_PATH"]
    text = CADDYFILE.read_text().replace("{$WEBHOOK_DOMAIN}", f"http://127.0.0.1:{proxy_port}")
    text = text.replace("reverse_proxy bot:8443", f"reverse_proxy 127.0.0.1:{bot_port}")
    config = tmp_path / "Caddyfile"
    config.write_text("{\n\tadmin off\n\tauto_https off\n}\n" + text)
    proc = await asyncio.create_subprocess_exec(
        caddy, "run", "--config", str(config), "--adapter", "caddyfile",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)},
    )  # fmt: skip
    public = f"http://127.0.0.1:{proxy_port}{path}"
    section = webhook_section(bot_port, webhook_path=path, webhook_url=public)
    db_path = tmp_path / "memory.db"
    try:
        async with telegram_rig(memory, db_path, telegram=section) as rig:
            hook = rig.server.webhook
            for _ in range(200):  # until Caddy listens
                if await hook.post(b"{}", url=f"http://127.0.0.1:{proxy_port}/") == 404:
                    break
                await asyncio.sleep(0.05)
            await rig.say(3, "hello through caddy")
            big = json.dumps({"update_id": 5, "pad": "x" * (2 << 20)}).encode()
            assert await hook.post(big, secret=hook.secret_token) == 413
            assert await hook.post(b"{}", secret="wrong-" + "y" * 20) == 403
            assert await hook.post(b"{}", url=f"http://127.0.0.1:{proxy_port}/other") == 404
    finally:
        proc.terminate()
        await proc.wait()
    assert hook.deliveries[-4].url == public and hook.deliveries[-4].status == 200
    assert stored_texts(db_path, "user") == ["hello through caddy"]
