"""deploy/: the compose file, .env.example, Dockerfile and systemd units agree with the code.

There is no Docker engine here: `docker compose config` runs when the compose plugin is present
(skipped with the reason otherwise) and the file is also checked structurally with PyYAML against
the Settings model. Commands the files run are invoked for real (`solace <cmd> --help`).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from bot.backends.llama_server_command import MODEL_ALIAS
from bot.config import Settings
from tests.paths import ROOT

DEPLOY = ROOT / "deploy"
SOLACE = Path(sys.executable).parent / "solace"
PROFILES = {"cpu": "model-cpu", "gpu": "vllm"}
VAR_RE = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")  # ${V}, ${V:-default}, ${V:?error}
ENV_LINE_RE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$")


def settings_env_vars() -> set[str]:
    """Every environment variable Settings reads, derived from its fields."""
    names = set()
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= {f"SOLACE_{name}__{sub}".upper() for sub in annotation.model_fields}
        else:
            names.add(f"SOLACE_{name}".upper())
    return names


def env_example() -> dict[str, str]:
    """Variable -> value shown, for each `NAME=value` line (commented or not)."""
    found = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        match = ENV_LINE_RE.match(line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """deploy/compose.yaml, parsed (YAML merge keys resolved)."""
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), split into stages."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def _json_form(instruction: str, keyword: str) -> list[str]:
    rest = instruction[len(keyword) :].strip()
    return json.loads(rest)


def _run_help(argv: list[str]) -> subprocess.CompletedProcess[str]:
    assert argv[0] == "solace", f"expected a solace command, got {argv}"
    return subprocess.run(
        [str(SOLACE), *argv[1:], "--help"], capture_output=True, text=True, timeout=120
    )


# --- .env.example <-> Settings ------------------------------------------------------------


def test_env_example_lists_exactly_the_settings() -> None:
    """Every SOLACE_* variable in .env.example is a setting, and every setting is listed."""
    listed = {name for name in env_example() if name.startswith("SOLACE_")}
    expected = settings_env_vars()
    hint = "regenerate with `python deploy/render_env_example.py > deploy/.env.example`"
    assert listed - expected == set(), f"not settings: {sorted(listed - expected)}; {hint}"
    assert expected - listed == set(), f"missing: {sorted(expected - listed)}; {hint}"


def test_env_example_defaults_are_valid_values(clean_env: pytest.MonkeyPatch) -> None:
    """Uncommenting any shown default gives settings that load (JSON lists, booleans, ...)."""
    monkeypatch = clean_env
    monkeypatch.chdir(DEPLOY)
    shown = {k: v for k, v in env_example().items() if k.startswith("SOLACE_") and v}
    shown = {k: v for k, v in shown.items() if "$" not in v}  # computed defaults are described
    assert len(shown) > 30
    defaults = Settings().model_dump()
    for name, value in shown.items():
        monkeypatch.setenv(name, value)
    # The file shows the real defaults: setting them all changes nothing.
    assert Settings().model_dump() == defaults


def test_env_example_has_no_secret_values() -> None:
    """Secrets appear only as empty, commented placeholders."""
    text = (DEPLOY / ".env.example").read_text()
    for name in ("TELEGRAM_TOKEN", "DISCORD_TOKEN", "OPENAI_API_KEY", "PSEUDONYM_SECRET"):
        assert re.search(rf"^# SOLACE_{name}=$", text, re.MULTILINE), name
        assert not re.search(rf"^SOLACE_{name}=", text, re.MULTILINE), name


# --- compose.yaml -----------------------------------------------------------------------------


def test_docker_compose_config_validates() -> None:
    """`docker compose config` accepts both profiles (needs the compose plugin, not an engine)."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI here")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"docker CLI without the compose plugin: {probe.stderr.strip()[:120]}")
    env_file = DEPLOY / ".env"
    created = not env_file.exists()
    if created:
        shutil.copy(DEPLOY / ".env.example", env_file)
    try:
        for profile in PROFILES:
            result = subprocess.run(
                [docker, "compose", "-f", str(DEPLOY / "compose.yaml"), "--profile", profile,
                 "config", "--quiet"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
    finally:
        if created:
            env_file.unlink()


def test_compose_file_follows_the_compose_spec() -> None:
    """The Compose specification's own parser (compose-spec) accepts the file, after the
    ${VAR:-default} interpolation docker compose would do; a typo'd key would be refused."""
    from compose_spec import PyCompose

    text = (DEPLOY / "compose.yaml").read_text()
    shown = env_example()
    text = VAR_RE.sub(lambda m: shown.get(m.group(1)) or _default(m.group(0)), text)
    document = yaml.safe_load(text.replace("$$", "$"))
    parsed = PyCompose.from_json(json.dumps(document))
    assert sorted(parsed.service_names()) == ["backup", "bot", "model-cpu", "vllm"]
    document["services"]["bot"]["restrat"] = "always"
    with pytest.raises(ValueError):
        PyCompose.from_json(json.dumps(document))


def _default(reference: str) -> str:
    """The default in `${VAR:-default}` (empty when there is none)."""
    _, sep, default = reference[2:-1].partition("-")
    return default if sep else ""


def test_profiles_pair_the_bot_with_a_model_server(compose: dict[str, Any]) -> None:
    """cpu = bot + llama.cpp server + backups; gpu = bot + vLLM + backups."""
    services = compose["services"]
    for profile, model in PROFILES.items():
        active = {name for name, s in services.items() if profile in s.get("profiles", [])}
        assert active == {"bot", model, "backup"}, (profile, active)
    for name, service in services.items():
        assert service.get("restart") in ("unless-stopped", "always"), name


def test_bot_reaches_each_model_server_through_the_openai_backend(
    compose: dict[str, Any],
) -> None:
    """The bot's base URL names a network alias and port every model service answers on."""
    services = compose["services"]
    env = services["bot"]["environment"]
    assert env["SOLACE_MODEL__BACKEND"] == "openai"
    match = re.match(r"^http://([a-z0-9-]+):(\d+)/v1$", env["SOLACE_OPENAI__BASE_URL"])
    assert match, env["SOLACE_OPENAI__BASE_URL"]
    host, port = match.groups()
    cpu, gpu = services["model-cpu"], services["vllm"]
    for service in (cpu, gpu):
        assert host in service["networks"]["default"]["aliases"]
        assert "healthcheck" in service
    assert cpu["environment"]["LLAMA_PORT"] == port
    vllm_args = gpu["command"]
    assert vllm_args[vllm_args.index("--port") + 1] == port
    assert vllm_args[vllm_args.index("--served-model-name") + 1] == env["SOLACE_OPENAI__MODEL"]
    assert "VLLM_TENSOR_PARALLEL" in vllm_args[vllm_args.index("--tensor-parallel-size") + 1]
    # The bot budgets for exactly the window each server gives one conversation (issue 19: a
    # slot's context, not the total), from one variable.
    window = vllm_args[vllm_args.index("--max-model-len") + 1]
    assert env["SOLACE_OPENAI__CONTEXT_TOKENS"] == cpu["environment"]["LLAMA_N_CTX"] == window
    # The cpu service runs llama-server with the bot's own flags, under the name the bot sends.
    script = (DEPLOY / "llama-server.sh").read_text()
    assert 'python3}" -m bot.backends.llama_server_command' in script
    assert env["SOLACE_OPENAI__MODEL"] == MODEL_ALIAS
    for dependency in ("model-cpu", "vllm"):
        assert services["bot"]["depends_on"][dependency]["condition"] == "service_healthy"


def test_compose_settings_and_volumes_match_the_code(compose: dict[str, Any]) -> None:
    """SOLACE_* values in compose are settings that validate; data and backups are volumes."""
    known = settings_env_vars()
    for name, service in compose["services"].items():
        for key in service.get("environment", {}):
            if key.startswith("SOLACE_"):
                assert key in known, f"{name}: {key} is not a setting"
    env = {  # ${VAR:-default} as compose resolves it with the variable unset
        k: VAR_RE.sub(lambda m: _default(m.group(0)), v)
        for k, v in compose["services"]["bot"]["environment"].items()
    }
    settings = Settings(**_nested(env))
    assert settings.model.backend == "openai"
    image_env = _dockerfile_env()
    data_dir = str(Path(image_env["SOLACE_MEMORY__DB_PATH"]).parent)
    for name in ("bot", "backup"):
        mounts = dict(v.split(":", 1) for v in compose["services"][name]["volumes"])
        assert mounts["solace-data"] == data_dir
        assert mounts["solace-backups"] == image_env["SOLACE_BACKUP__DIR"]
    assert set(compose["volumes"]) == {"solace-data", "solace-backups"}


def _nested(env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in env.items():
        section, _, field = key.removeprefix("SOLACE_").lower().partition("__")
        out.setdefault(section, {})[field] = value
    return out


def test_compose_variables_are_documented(compose: dict[str, Any]) -> None:
    """Every ${VAR} compose interpolates is in .env.example, and every extra variable is used
    (by compose.yaml or an overlay such as compose.webhook.yaml)."""
    text = "".join(p.read_text() for p in sorted(DEPLOY.glob("compose*.yaml")))
    used = set(VAR_RE.findall(text.replace("$$", "")))
    listed = set(env_example())
    assert used - listed == set(), f"add to .env.example: {sorted(used - listed)}"
    extra = {n for n in listed if not n.startswith("SOLACE_")} - named_by_settings()
    assert extra - used == set(), f"not used by any compose file: {sorted(extra - used)}"


def named_by_settings() -> set[str]:
    """Variables a setting names (e.g. jobs.judge_api_key_env = "OPENAI_API_KEY")."""
    names = set()
    for field in Settings.model_fields.values():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for name, sub in annotation.model_fields.items():
                if name.endswith("_env") and isinstance(sub.default, str):
                    names.add(sub.default)
    return names


def test_env_example_lists_variables_named_by_settings() -> None:
    """A secret another setting points to by name (the judge's key) is listed too."""
    assert named_by_settings() <= set(env_example())


# --- Dockerfile -------------------------------------------------------------------------------


def _dockerfile_env() -> dict[str, str]:
    runtime = dockerfile_stages()[-1]
    env: dict[str, str] = {}
    for line in runtime:
        if line.upper().startswith("ENV "):
            for key, value in re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", line):
                env[key] = value
    return env


def test_dockerfile_is_multi_stage_non_root_with_volume_and_healthcheck() -> None:
    """llama-cpp-python is compiled in the builder; the runtime has no compiler and a user."""
    stages = dockerfile_stages()
    assert len(stages) >= 2 and " AS builder" in stages[0][0]
    builder, runtime = " ".join(stages[0]), " ".join(stages[-1])
    assert "llama-cpp-python==" in builder and "build-essential" in builder
    assert "build-essential" not in runtime and "cmake" not in runtime
    users = [line.split()[1] for line in stages[-1] if line.upper().startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    env = _dockerfile_env()
    assert {k for k in env if k.startswith("SOLACE_")} <= settings_env_vars()
    volume = next(line for line in stages[-1] if line.upper().startswith("VOLUME "))
    assert str(Path(env["SOLACE_MEMORY__DB_PATH"]).parent) in _json_form(volume, "VOLUME")
    assert any(line.upper().startswith("HEALTHCHECK ") for line in stages[-1])


def test_dockerfile_commands_are_real_cli_commands() -> None:
    """CMD and HEALTHCHECK run `solace` subcommands that exist (`--help` succeeds)."""
    runtime = dockerfile_stages()[-1]
    cmd = _json_form(next(line for line in runtime if line.startswith("CMD ")), "CMD")
    health_line = next(line for line in runtime if line.startswith("HEALTHCHECK "))
    health = json.loads(health_line[health_line.index("CMD ") + 4 :])
    for argv in (cmd, health):
        result = _run_help(argv)
        assert result.returncode == 0, f"{argv}: {result.stdout}{result.stderr}"
        assert "Usage:" in result.stdout


def test_image_context_keeps_secrets_and_data_out() -> None:
    """The build context is an allow-list; .env files and databases can never be copied in."""
    patterns = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"

    def included(path: str) -> bool:
        keep = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            body = pattern.lstrip("!").rstrip("/").removeprefix("**/")
            hit = any(fnmatch.fnmatch(part, body) for part in _prefixes(path)) or fnmatch.fnmatch(
                Path(path).name, body
            )
            if hit:
                keep = negate
        return keep

    for path in ("deploy/.env", ".env", "bot/solace.db", "data/x.json", ".git/config",
                 ".venv/bin/python", "bot/x.db-wal", "pseudonym.secret"):  # fmt: skip
        assert not included(path), path
    for path in (
        "bot/engine/engine.py",
        "pyproject.toml",
        "deploy/llama-server.sh",
        "dialogue/types.py",
    ):
        assert included(path), path
    runtime = " ".join(dockerfile_stages()[-1])
    assert ".env" not in runtime


def _prefixes(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def test_llama_server_script_is_executable_shell() -> None:
    """The model service's command exists, is executable and parses."""
    script = DEPLOY / "llama-server.sh"
    assert os.access(script, os.X_OK)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


# --- systemd ----------------------------------------------------------------------------------

UNITS = ("solace.service", "solace-backup.service", "solace-backup.timer")


def test_systemd_unit_is_hardened_and_runs_real_commands() -> None:
    """A dedicated user, a read-only system except the database folder, real ExecStart."""
    text = (DEPLOY / "solace.service").read_text()
    keys = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#")
    assert keys.get("User") == "solace" or keys.get("DynamicUser") == "yes"
    assert keys["ProtectSystem"] == "strict" and keys["NoNewPrivileges"] == "yes"
    db_dir = str(Path(re.search(r"SOLACE_MEMORY__DB_PATH=(\S+)", text).group(1)).parent)
    assert keys["ReadWritePaths"] == db_dir
    for unit in ("solace.service", "solace-backup.service"):
        for line in (DEPLOY / unit).read_text().splitlines():
            if line.startswith(("ExecStart=", "ExecStartPre=")):
                argv = line.split("=", 1)[1].split()
                assert argv[0] == "/opt/solace/.venv/bin/solace"
                result = _run_help(["solace", *argv[1:]])
                assert result.returncode == 0, f"{line}: {result.stdout}{result.stderr}"


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` reports nothing (paths pointed at this checkout's venv)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    venv = Path(sys.executable).parent.parent
    for unit in UNITS:
        text = (DEPLOY / unit).read_text().replace("/opt/solace/.venv", str(venv))
        (tmp_path / unit).write_text(text)
    result = subprocess.run(
        [analyze, "verify", *(f"./{u}" for u in UNITS)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if "Failed to initialize manager" in result.stderr or "Operation not permitted" in (
        result.stderr
    ):
        pytest.skip(f"systemd-analyze cannot run here: {result.stderr.strip()[:200]}")
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
