"""Crisis replies and the hotline table (bot.safety.resources)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.safety import (
    SafetyLayer,
    screen_message,
)
from bot.safety.resources import load_hotlines

# --- crisis replies and the hotline table --------------------------------------------------------


def test_hotline_table_validates_and_has_the_well_known_numbers() -> None:
    table = load_hotlines()
    assert "988" in table.countries["US"].lines[0].contact
    assert table.countries["US"].emergency == "911"
    assert "116 123" in table.countries["GB"].lines[0].contact
    assert table.countries["AU"].emergency == "000"
    assert table.international.url == "https://findahelpline.com"
    assert all(info.emergency for info in table.countries.values())


@pytest.mark.parametrize(
    "text,code",
    [("gb", "GB"), ("UK", "GB"), (" united kingdom ", "GB"), ("usa", "US"), ("XX", None)],
)
def test_parse_country(text: str, code: str | None) -> None:
    assert load_hotlines().parse_country(text) == code


def test_crisis_reply_for_a_country_a_hint_and_nothing() -> None:
    layer = SafetyLayer()
    result = screen_message("I want to kill myself")
    us = layer.crisis_reply(result, "US", None)
    assert "988" in us and "911" in us and "/country" not in us
    hinted = layer.crisis_reply(result, None, "de-DE")
    assert "If you're in Germany" in hinted and "0800 111 0 111" in hinted and "/country" in hinted
    unknown = layer.crisis_reply(result, None, None)
    assert "findahelpline.com" in unknown and "/country" in unknown
    assert "an AI" in us and "not a therapist" in us


def test_crisis_reply_wording_per_category_and_subject() -> None:
    layer = SafetyLayer()
    medical = layer.crisis_reply(screen_message("I took a whole bottle of pills"), "GB", None)
    assert medical.startswith("This sounds like a medical emergency. Please call 999 now")
    other = layer.crisis_reply(
        screen_message("my sister says she wants to end her life"), "US", None
    )
    assert "someone you care about" in other
    abuse = layer.crisis_reply(screen_message("my husband hits me"), "US", None)
    assert "not your fault" in abuse and "1-800-799-7233" in abuse


def test_operator_hotline_table(tmp_path: Path) -> None:
    table = json.loads(load_hotlines().model_dump_json())
    table["countries"] = {"NZ": table["countries"]["NZ"]}
    path = tmp_path / "hotlines.json"
    path.write_text(json.dumps(table))
    layer = SafetyLayer(type("S", (), {"hotlines_path": path, "default_country": "NZ"})())
    assert "1737" in layer.crisis_reply(screen_message("i want to die"))
    path.write_text('{"countries": {"nz": {}}}')
    from bot.errors import ConfigError

    with pytest.raises(ConfigError, match="hotline table"):
        SafetyLayer(type("S", (), {"hotlines_path": tmp_path / "bad.json"})())
