"""The ExTES paper's published data-set figures, to print beside a data set's own statistics.

Transcribed from Zheng et al. 2023, "Building Emotional Support Chatbots in the Era of LLMs"
(arXiv 2308.11584) and the official ExTES README, as collected in shared/papers/FIGURES.md and
the data directory's README. They describe the released ExTES, not anything measured here. The
README's scene counts add up to 11,183 (the paper says 11,177 dialogues) and its strategy counts
to 97,894 (its "Overall" row says 97,893); both are kept as printed.
"""

from __future__ import annotations

EXTES_PAPER_SOURCE = "ExTES paper (Zheng et al. 2023, arXiv 2308.11584) and its README"
EXTES_PAPER_TOTALS: dict[str, float] = {
    "dialogues": 11_177,
    "utterances": 200_393,
    "utterances_per_dialogue": 18.2,
    "words_per_utterance": 26.0,
}

# Responses per strategy (canonical names of dialogue.strategies.EXTES_STRATEGIES).
EXTES_PAPER_STRATEGIES: dict[str, int] = {
    "Emotional Validation": 19_367,
    "Affirmation": 16_539,
    "Reflective Statements": 14_560,
    "Empathetic Statements": 8_482,
    "Suggest Options": 6_079,
    "Offer Hope": 4_665,
    "Others": 3_887,
    "Collaborative Planning": 3_534,
    "Provide Different Perspectives": 3_322,
    "Share Information": 3_181,
    "Clarification": 2_898,
    "Promote Self-Care Practices": 2_686,
    "Stress Management": 2_474,
    "Normalize Experiences": 2_403,
    "Reframe Negative Thoughts": 2_050,
    "Avoid Judgment and Criticism": 1_767,
}

# Dialogues per scene, in the README's order. "Academic Stress" and "Academic Stress or
# Pressure" are two scenes there.
EXTES_PAPER_SCENES: dict[str, int] = {
    "Conflicts or Communication Problems": 1_109,
    "Communication Challenges": 1_008,
    "Breakups or Divorce": 710,
    "Dealing with the Loss of a Pet": 601,
    "Coping with the Death of a Loved One": 593,
    "Work-related Stress and Burnout": 403,
    "Financial Worries and Uncertainty": 403,
    "Unemployment-related Stress": 403,
    "Academic Stress": 403,
    "Depression and Low Mood": 403,
    "Sibling Rivalry or Family Conflict": 403,
    "Adjusting to a New Job or Role": 302,
    "Chronic Illness or Pain Management": 302,
    "Low Self-Esteem or Lack of Confidence": 302,
    "Spirituality and Faith": 202,
    "Managing Bipolar Disorder": 202,
    "Anxiety and Panic": 202,
    "Coping with a Diagnosis or Medical Treatment": 202,
    "Caregiver Support": 202,
    "Finding Meaning and Purpose in Life": 202,
    "Navigating Gender Identity and Transitioning": 202,
    "Moving to a New City or Country": 202,
    "Career Transitions": 202,
    "Parenthood and Parenting Challenges": 202,
    "Academic Stress or Pressure": 202,
    "Job Loss or Career Setbacks": 202,
    "Parenting Challenges and Parental Guilt": 202,
    "Healing from Abuse": 202,
    "Addiction and Recovery": 202,
    "Support for Loved Ones or Friends": 202,
    "Body Image Concerns and Eating Disorders": 101,
    "LGBTQ+ Identity": 101,
    "Cultural Identity and Belonging": 101,
    "Surviving and Recovering from Physical or Emotional Abuse": 101,
    "Healing from Sexual Assault or Domestic Violence": 101,
    "Post-Traumatic Stress Disorder (PTSD)": 101,
}
