"""Support-strategy taxonomies: ExTES's 16 and ESConv's 8, with their definitions.

The definitions paraphrase the papers that introduced them (Zheng et al. 2023, "Building
Emotional Support Chatbots in the Era of LLMs", Table 2; Liu et al. 2021, "Towards Emotional
Support Dialog Systems", Sec. 3.2). `normalize_strategy` maps the label variants found in the
data (case, "&"/"and", plurals, abbreviations, ESConv's raw annotation names) to canonical names.
"""

from __future__ import annotations

import re
from typing import Literal

Taxonomy = Literal["extes", "esconv"]
TAXONOMIES: tuple[Taxonomy, ...] = ("extes", "esconv")

# Outcome of classifying a label; the loaders count each one in their load report.
Outcome = Literal["canonical", "variant", "empty", "unknown"]

EXTES_STRATEGIES: dict[str, str] = {
    "Reflective Statements": (
        "Repeat or rephrase what the user said to show that you are actively listening."
    ),
    "Clarification": (
        "Ask for more information to make sure you understand the user's feelings and situation."
    ),
    "Emotional Validation": "Acknowledge and validate the user's emotions without judgement.",
    "Empathetic Statements": "Express understanding of and empathy for the user's experience.",
    "Affirmation": "Give positive reinforcement and encouragement that lifts the user's spirits.",
    "Offer Hope": "Share optimistic perspectives or possibilities that instil hope.",
    "Avoid Judgment and Criticism": (
        "Keep a safe, non-judgemental space; do not criticise the user's feelings or choices."
    ),
    "Suggest Options": "Offer practical suggestions or alternative ways to address the issue.",
    "Collaborative Planning": "Work out an action plan together with the user.",
    "Provide Different Perspectives": (
        "Offer other ways of looking at the situation so the user can gain new insight."
    ),
    "Reframe Negative Thoughts": (
        "Help the user notice and challenge negative thoughts and replace them with more "
        "balanced ones."
    ),
    "Share Information": (
        "Give factual information about emotions, coping mechanisms or self-care practices."
    ),
    "Normalize Experiences": (
        "Explain that such feelings or reactions are common and that many people share them."
    ),
    "Promote Self-Care Practices": "Encourage activities that support well-being and self-care.",
    "Stress Management": (
        "Suggest stress-management techniques such as exercise, breathing, meditation or time "
        "in nature."
    ),
    "Others": "Support the user in other ways (greetings, thanks, small talk, closing).",
}

EXTES_ABBREVIATIONS: dict[str, str] = {
    "RS": "Reflective Statements",
    "Cla": "Clarification",
    "EV": "Emotional Validation",
    "ES": "Empathetic Statements",
    "Aff": "Affirmation",
    "OH": "Offer Hope",
    "AJC": "Avoid Judgment and Criticism",
    "SO": "Suggest Options",
    "CP": "Collaborative Planning",
    "PDP": "Provide Different Perspectives",
    "RNT": "Reframe Negative Thoughts",
    "SI": "Share Information",
    "NE": "Normalize Experiences",
    "PSP": "Promote Self-Care Practices",
    "SM": "Stress Management",
    "Oth": "Others",
}

ESCONV_STRATEGIES: dict[str, str] = {
    "Question": (
        "Ask for information about the problem to help the seeker put what they face into words."
    ),
    "Restatement or Paraphrasing": (
        "Rephrase the seeker's statements more concisely so they can see their situation "
        "more clearly."
    ),
    "Reflection of feelings": "Put the seeker's feelings into words and describe them.",
    "Self-disclosure": (
        "Share similar experiences or emotions of your own to express empathy with the seeker."
    ),
    "Affirmation and Reassurance": (
        "Affirm the seeker's strengths, motivation and abilities; reassure and encourage them."
    ),
    "Providing Suggestions": (
        "Suggest ways to change, careful not to overstep and tell the seeker what to do."
    ),
    "Information": (
        "Give useful information (facts, data, opinions, resources) or answer questions."
    ),
    "Others": "Exchange pleasantries or use strategies outside the other seven categories.",
}

# Variants seen in the data, keyed by their normalized form (see `_key`). ESConv's raw annotation
# names appear in FailedESConv.json; "Direct Guidance" is the older name of the suggestion
# category and "Approval" an older wording of "Affirmation".
_ESCONV_VARIANTS: dict[str, str] = {
    "questions": "Question",
    "other": "Others",
    "restatement": "Restatement or Paraphrasing",
    "paraphrasing": "Restatement or Paraphrasing",
    "reflection of feeling": "Reflection of feelings",
    "self disclosure": "Self-disclosure",
    "approval and reassurance": "Affirmation and Reassurance",
    "direct guidance": "Providing Suggestions",
    "providing suggestion": "Providing Suggestions",
    "suggestions": "Providing Suggestions",
}
# ExTES variants: the README writes "Avoid Judgment And Criticism"; British spellings and
# singular forms occur in derived copies.
_EXTES_VARIANTS: dict[str, str] = {
    "avoid judgement and criticism": "Avoid Judgment and Criticism",
    "normalise experiences": "Normalize Experiences",
    "normalizing experiences": "Normalize Experiences",
    "reflective statement": "Reflective Statements",
    "empathetic statement": "Empathetic Statements",
    "suggest option": "Suggest Options",
    "provide different perspective": "Provide Different Perspectives",
    "promote self care practice": "Promote Self-Care Practices",
    "self care": "Promote Self-Care Practices",
    "other": "Others",
}


def _key(label: str) -> str:
    """Lower-case, "&" → "and", drop a trailing "(ABBR)", punctuation → single spaces."""
    text = re.sub(r"\([^)]*\)\s*$", "", label.strip()).replace("&", " and ")
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def _build_index(taxonomy: Taxonomy) -> dict[str, str]:
    """Normalized key → canonical name, for the canonical names, variants and abbreviations."""
    if taxonomy == "extes":
        names, variants = EXTES_STRATEGIES, _EXTES_VARIANTS
        abbreviations = {_key(a): n for a, n in EXTES_ABBREVIATIONS.items()}
    else:
        names, variants, abbreviations = ESCONV_STRATEGIES, _ESCONV_VARIANTS, {}
    index = {_key(name): name for name in names}
    for mapping in (variants, abbreviations):
        for variant_key, name in mapping.items():
            index.setdefault(_key(variant_key), name)
    return index


_INDEX: dict[str, dict[str, str]] = {t: _build_index(t) for t in TAXONOMIES}


def strategies_for(taxonomy: Taxonomy) -> dict[str, str]:
    """The strategy → definition map of a taxonomy ("extes" or "esconv")."""
    if taxonomy == "extes":
        return EXTES_STRATEGIES
    if taxonomy == "esconv":
        return ESCONV_STRATEGIES
    raise ValueError(f"unknown strategy taxonomy {taxonomy!r}; expected one of {TAXONOMIES}")


def classify_strategy(label: object, taxonomy: Taxonomy) -> tuple[str | None, Outcome]:
    """Map a raw label to (canonical name or None, what happened).

    "canonical": the label already is a canonical name; "variant": it was mapped (case,
    wording, abbreviation); "empty": None or blank; "unknown": outside the taxonomy.
    """
    names = strategies_for(taxonomy)
    if label is None or (isinstance(label, str) and not label.strip()):
        return None, "empty"
    if not isinstance(label, str):
        return None, "unknown"
    if label in names:
        return label, "canonical"
    key = _key(label)
    index = _INDEX[taxonomy]
    for candidate in (key, key + "s", key.removesuffix("s")):
        if candidate in index:
            return index[candidate], "variant"
    # Abbreviations are case-sensitive in spirit ("ES" vs "es"); accept the exact spelling too.
    if taxonomy == "extes" and label.strip() in EXTES_ABBREVIATIONS:
        return EXTES_ABBREVIATIONS[label.strip()], "variant"
    return None, "unknown"


def normalize_strategy(label: object, taxonomy: Taxonomy) -> str | None:
    """The canonical strategy name for `label`, or None when it is empty or unknown."""
    return classify_strategy(label, taxonomy)[0]
