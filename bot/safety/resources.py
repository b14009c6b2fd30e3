"""Crisis resources: the hotline table (`bot/safety/data/hotlines.json`) and the crisis reply.

The table is validated with pydantic when it is loaded, so a typo in an operator's own table
(`safety.hotlines_path`) is a clear start-up error instead of a broken reply at 3 a.m.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.errors import ConfigError

COUNTRY_CODE_LEN = 2
MAX_LINES_SHOWN = 3


class Hotline(BaseModel):
    """One service: its name, how to reach it and which categories it serves."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(min_length=1)
    contact: str = Field(min_length=1, description="How to reach it, e.g. 'call or text 988'.")
    topics: tuple[str, ...] = Field(min_length=1)
    url: str | None = None


class Country(BaseModel):
    """The emergency number and helplines of one country."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(min_length=1, description="As it reads after 'in': 'the United Kingdom'.")
    emergency: str = Field(min_length=1)
    lines: tuple[Hotline, ...] = ()


class International(BaseModel):
    """The fallback directory shown when the country is unknown (and always as a footer)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    url: str
    contact: str


class Hotlines(BaseModel):
    """The whole table: countries by ISO 3166-1 alpha-2 code, aliases, language hints."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    international: International
    countries: dict[str, Country]
    aliases: dict[str, str] = {}
    language_hints: dict[str, str] = {}

    @field_validator("countries")
    @classmethod
    def _codes_are_alpha2(cls, value: dict[str, Country]) -> dict[str, Country]:
        bad = [c for c in value if len(c) != COUNTRY_CODE_LEN or not c.isalpha() or not c.isupper()]
        if bad:
            raise ValueError(f"country keys must be upper-case ISO alpha-2 codes, got {bad}")
        return value

    def parse_country(self, text: str | None) -> str | None:
        """A known country code from user input ("gb", "UK", "United Kingdom"), else None."""
        if not text:
            return None
        key = " ".join(text.strip().upper().replace(".", "").split())
        key = self.aliases.get(key, key)
        return key if key in self.countries else None

    def country_from_language(self, language_code: str | None) -> str | None:
        """A country hinted by an IETF language tag ("pt-br" → BR, "de" → DE, "en" → None)."""
        if not language_code:
            return None
        parts = language_code.replace("_", "-").split("-")
        if len(parts) > 1 and parts[-1].upper() in self.countries:
            return parts[-1].upper()
        return self.language_hints.get(parts[0].lower())


@functools.lru_cache(maxsize=8)
def _load(path: str | None) -> Hotlines:
    try:
        if path is None:
            raw = resources.files("bot.safety").joinpath("data/hotlines.json").read_text("utf-8")
        else:
            raw = Path(path).read_text("utf-8")
        return Hotlines.model_validate(json.loads(raw))
    except (OSError, ValueError, ValidationError) as exc:
        where = path or "bot/safety/data/hotlines.json"
        raise ConfigError(f"cannot load the hotline table {where}: {exc}") from exc


def load_hotlines(path: str | Path | None = None) -> Hotlines:
    """The packaged hotline table, or an operator's own file (same format)."""
    return _load(None if path is None else str(path))


_OPENINGS = {
    "suicide": (
        "I'm really glad you told me. It sounds like you're in a lot of pain right now, and "
        "your life matters. You deserve support from a real person who can help, right now."
    ),
    "self_harm": (
        "Thank you for trusting me with this, it takes courage. You deserve care, not more "
        "pain, and a real person can help you through this moment."
    ),
    "abuse": (
        "I'm so sorry this is happening to you. It is not your fault, and you deserve to be "
        "safe. People who know how to help with this are there for you."
    ),
    "harm_to_others": (
        "Thank you for being honest with me about these feelings. If you feel you might act on "
        "them, please put some distance between yourself and anything you could use to hurt "
        "someone, and talk to someone right now."
    ),
    "medical_emergency": (
        "This sounds like a medical emergency. Please call {emergency} now, or ask someone "
        "near you to call."
    ),
}
_OTHER_OPENING = (
    "It sounds like someone you care about may be in danger, and it's good that you're looking "
    "out for them. These services also help people who are worried about someone else."
)
_AI_NOTE = "I'm an AI, not a therapist or an emergency service, so please reach out to them:"
_CLOSING = "I'm still here, and we can keep talking whenever you want."


def _lines_for(country: Country, category: str | None) -> list[Hotline]:
    topic = category or "suicide"
    chosen = [line for line in country.lines if topic in line.topics]
    return chosen[:MAX_LINES_SHOWN]


def compose_crisis_reply(
    hotlines: Hotlines,
    category: str | None,
    subject: str,
    country: str | None,
    language_code: str | None,
) -> str:
    """The crisis reply: opening for the category, resources, how to set the country."""
    code = hotlines.parse_country(country)
    hinted = code is None
    if hinted:
        code = hotlines.country_from_language(language_code)
    opening = _OPENINGS.get(category or "", _OPENINGS["suicide"])
    if subject == "other" and category != "medical_emergency":
        opening = _OTHER_OPENING
    info = hotlines.countries[code] if code is not None else None
    emergency = info.emergency if info is not None else "your local emergency number"
    parts = [opening.format(emergency=emergency), _AI_NOTE, ""]
    intl = hotlines.international
    if info is not None:
        parts.append(f"If you're in {info.name}:" if hinted else f"In {info.name}:")
        emergency_line = f"• Emergency services: {info.emergency}"
        lines = [f"• {line.name}: {line.contact}" for line in _lines_for(info, category)]
        parts.extend(
            [emergency_line, *lines]
            if category == "medical_emergency"
            else [*lines, emergency_line]
        )
        parts.append(f"• Somewhere else: {intl.name}, {intl.url} ({intl.contact})")
    else:
        parts.append(f"• {intl.name}: {intl.url} ({intl.contact})")
        parts.append(
            "• Your local emergency number (112 in Europe, 911 in North America, 999 in the UK)"
        )
    danger = f"If you or anyone is in immediate danger, call {emergency} now."
    parts += ["", danger]
    if hinted:
        parts.append(
            "To see the services for your country, send /country with its two-letter code, e.g. /country GB."
        )
    parts += ["", _CLOSING]
    return "\n".join(parts)
