"""Scenarios to write about: ExTES's 36 scenes with an example situation each, or your own file.

The names are the ExTES scenes (dialogue.paper_figures.EXTES_PAPER_SCENES); the example
situations are this project's own words, written in the first person like ExTES descriptions.
A scenario file is TOML or YAML:

```toml
[[scenario]]
name = "Night-shift loneliness"
description = "I work nights at a warehouse and I have not seen my friends in weeks."
```
(YAML: a top-level `scenario:` list of the same mappings, or a bare list.)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dialogue.paper_figures import EXTES_PAPER_SCENES


class ScenarioError(ValueError):
    """A scenario file is missing, unreadable or malformed; the message says where."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """A scene name and an example situation that shows the model what the scene means."""

    name: str
    description: str


EXTES_SCENARIO_EXAMPLES: dict[str, str] = {
    "Conflicts or Communication Problems": "My flatmate and I keep arguing about chores, and last night it turned into shouting; now we walk past each other without a word.",
    "Communication Challenges": "Whenever I try to tell my partner that I feel left out of their plans, it comes out wrong and we end up talking about something else.",
    "Breakups or Divorce": "My wife told me last month that she wants a divorce after eleven years, and I still wake up expecting her to be there.",
    "Dealing with the Loss of a Pet": "Our old dog Biscuit had to be put down on Saturday, and the house feels empty every time I come home from work.",
    "Coping with the Death of a Loved One": "My grandmother, who raised me, died in the spring, and I keep picking up the phone to call her on Sundays.",
    "Work-related Stress and Burnout": "For months I have been doing the work of two people since a colleague left, and I now dread every Monday morning.",
    "Financial Worries and Uncertainty": "My rent went up again and my savings are nearly gone; I lie awake doing sums that never add up.",
    "Unemployment-related Stress": "I was laid off three months ago, I have sent out sixty applications, and I have heard back from almost none of them.",
    "Academic Stress": "My final exams start in two weeks, I am behind in three subjects, and my parents expect top grades.",
    "Depression and Low Mood": "For weeks I have had no energy for anything I used to enjoy, and getting out of bed feels like a huge effort.",
    "Sibling Rivalry or Family Conflict": "My brother always gets the praise at family dinners, and last weekend he made a joke about my job in front of everyone.",
    "Adjusting to a New Job or Role": "I was promoted to team lead two weeks ago and I feel like a fraud managing people who used to be my peers.",
    "Chronic Illness or Pain Management": "My back pain has lasted over a year; some days I cannot sit through a film, and friends have stopped inviting me out.",
    "Low Self-Esteem or Lack of Confidence": "I compare myself to everyone at work and always come out worse, even when my manager says I am doing fine.",
    "Spirituality and Faith": "I grew up religious, but lately I am full of doubts and I feel guilty about it when I sit with my family at services.",
    "Managing Bipolar Disorder": "I was diagnosed with bipolar disorder last year, and I am scared my friends will notice when my mood swings start again.",
    "Anxiety and Panic": "I had a panic attack on the bus last week, and now my chest tightens just thinking about taking it to work.",
    "Coping with a Diagnosis or Medical Treatment": "My doctor told me I have type 1 diabetes, and learning to inject insulin every day feels overwhelming.",
    "Caregiver Support": "I look after my father, who has dementia, while working part time, and I have not had an evening to myself in months.",
    "Finding Meaning and Purpose in Life": "I have a stable job and a nice flat, yet I keep asking myself what the point of any of it is.",
    "Navigating Gender Identity and Transitioning": "I have started using a new name with close friends, and I am nervous about telling my parents and my colleagues.",
    "Moving to a New City or Country": "I moved abroad for my partner's job six months ago, and I still do not know anyone here and struggle with the language.",
    "Career Transitions": "After ten years as an accountant I want to retrain as a teacher, but I am afraid of starting over at thirty-five.",
    "Parenthood and Parenting Challenges": "My toddler has tantrums every evening, and my partner and I argue about how to handle them.",
    "Academic Stress or Pressure": "My scholarship depends on keeping my average up, and one bad grade this term has me panicking about losing it.",
    "Job Loss or Career Setbacks": "I was passed over for the promotion I had worked towards for three years, and a newer colleague got it.",
    "Parenting Challenges and Parental Guilt": "I work long hours and missed my daughter's school play, and I keep feeling that I am failing her.",
    "Healing from Abuse": "I left a controlling relationship a year ago, but I still flinch when someone raises their voice near me.",
    "Addiction and Recovery": "I have been sober for four months, and a work party this Friday where everyone will drink has me worried.",
    "Support for Loved Ones or Friends": "My best friend is going through a hard depression, and I do not know how to help without saying the wrong thing.",
    "Body Image Concerns and Eating Disorders": "I avoid mirrors and photos, and I have started skipping meals before social events so I feel less bloated.",
    "LGBTQ+ Identity": "I came out as bisexual to a few friends, but I am afraid of how my traditional family will react if they find out.",
    "Cultural Identity and Belonging": "I grew up between two cultures and I feel too foreign for one and not foreign enough for the other.",
    "Surviving and Recovering from Physical or Emotional Abuse": "My parent used to belittle me constantly, and even now that I live on my own I hear their voice when I make a mistake.",
    "Healing from Sexual Assault or Domestic Violence": "Something happened to me at a party last year that I have never told anyone about, and I have avoided parties since.",
    "Post-Traumatic Stress Disorder (PTSD)": "Since the car accident in January I have nightmares most nights, and I tense up whenever I have to drive.",
}


def default_scenarios() -> list[Scenario]:
    """The 36 ExTES scenes, in the ExTES README's order, each with its example situation."""
    return [Scenario(name, EXTES_SCENARIO_EXAMPLES[name]) for name in EXTES_PAPER_SCENES]


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read the scenario file ({exc})") from exc
    if path.suffix.lower() == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError(f"{path}: not valid TOML: {exc}") from exc
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:
            raise ScenarioError(f"{path}: a YAML file needs PyYAML: pip install pyyaml") from exc
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ScenarioError(f"{path}: not valid YAML: {exc}") from exc
    raise ScenarioError(f"{path}: a scenario file ends in .toml, .yaml or .yml")


def load_scenarios(path: str | Path) -> list[Scenario]:
    """Scenarios from a TOML/YAML file (`scenario` list of {name, description}); names unique."""
    path = Path(path)
    data = _read(path)
    items = data.get("scenario") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise ScenarioError(f"{path}: expected a non-empty 'scenario' list of name/description")
    scenarios: list[Scenario] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ScenarioError(f"{path}: scenario {index} is not a table/mapping")
        extra = sorted(set(item) - {"name", "description"})
        if extra:
            raise ScenarioError(f"{path}: scenario {index}: unknown keys {extra}")
        name, description = item.get("name"), item.get("description")
        for key, value in (("name", name), ("description", description)):
            if not isinstance(value, str) or not value.strip():
                raise ScenarioError(f"{path}: scenario {index}: '{key}' must be a non-empty string")
        scenarios.append(Scenario(" ".join(str(name).split()), " ".join(str(description).split())))
    names = [s.name.casefold() for s in scenarios]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ScenarioError(f"{path}: scenario names must be unique; repeated: {duplicates}")
    return scenarios


def select(scenarios: list[Scenario], only: list[str]) -> list[Scenario]:
    """The scenarios named in `only` (all when empty); unknown names raise ScenarioError."""
    if not only:
        return scenarios
    by_name = {s.name.casefold(): s for s in scenarios}
    missing = [n for n in only if n.casefold() not in by_name]
    if missing:
        raise ScenarioError(f"only_scenarios names unknown scenarios: {missing}")
    return [by_name[n.casefold()] for n in only]
