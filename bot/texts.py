"""The fixed sentences of a turn and of the user commands, the same on every platform.

Elsewhere, each beside the rule that decides it: crisis replies (`bot.safety.resources`, built
from the hotline table), the reply that replaces a withdrawn one (`SafetyLayer.fallback_reply`),
and the adapters' notices about access, rate limits, non-text messages and the /forget
confirmation (`bot.adapters.commands`).
"""

from __future__ import annotations

COMMANDS_HELP = (
    "/reset - start a fresh conversation (your earlier messages stay stored for /export)\n"
    "/forget - erase everything stored about you, now and for good\n"
    "/export - get a copy of everything stored about you\n"
    "/privacy - what is stored, for how long, and who may see it\n"
    "/country XX - your country (two letters), so I can point to local support services\n"
    "/review on|off - let trained moderators read our conversations to improve Solace (off)\n"
    "/help - this list"
)

NOTICE_TEMPLATE = (
    "Hi, I'm Solace. Before we talk: I'm an AI companion - not a therapist, doctor or emergency "
    "service. If you are in danger, please contact your local emergency number.\n"
    "What I keep: your messages and my replies, under a pseudonym (not your name or account "
    "id), for {retention_days} days, so I can remember our conversation. If a message suggests "
    "someone may be in danger, that conversation is flagged and may be reviewed by a trained "
    "moderator to keep this service safe. You can erase everything at any time with /forget, "
    "or get a copy with /export. /privacy shows this again."
)

HELP_TEXT = (
    "I'm Solace, an AI companion for when things feel heavy. Just write to me about whatever is "
    "on your mind.\n" + COMMANDS_HELP
)

EMPTY_MESSAGE = "I'm here whenever you're ready - that message looked empty to me."
TOO_LONG = (
    "Thank you for sharing all of that. It's more than I can take in at once, so I've kept "
    "only the beginning. Could you tell me, in a few sentences, what feels most important "
    "right now?"
)
BACKEND_UNAVAILABLE = (
    "I'm sorry - I'm having trouble gathering my thoughts right now. What you wrote is saved. "
    "Please try again in a moment."
)
STORAGE_UNAVAILABLE = (
    "I'm sorry - something went wrong on my side and I couldn't save your message. "
    "Please try again in a moment."
)
RESET_DONE = "Okay - let's start fresh. What would you like to talk about?"
FORGET_DONE = (
    "Done. Everything stored about you has been erased. If you write again, we start from "
    "the beginning."
)
FORGET_IN_PROGRESS = (
    "Your messages and everything else stored about you have been deleted. I'm still clearing "
    "the last traces from the database's files; that finishes on its own within a few minutes. "
    "If you write again, we start from the beginning."
)
FORGET_FAILED = (
    "I'm sorry - I couldn't erase your data just now, so nothing has been erased yet. The "
    "database was busy. Please send /forget yes again in a minute."
)
COUNTRY_SET = "Thanks - I'll show support services for {country} if you ever need them."
COUNTRY_CLEARED = "Okay - I've cleared your country."
COUNTRY_INVALID = "Please give a two-letter country code, like /country GB or /country US."
REVIEW_ON = (
    "Thank you. From now on, trained moderators may read our conversations (with emails, phone "
    "numbers and links removed, and never your name or account id) to keep Solace safe and "
    "helpful. /review off stops it at any time and deletes those copies."
)
REVIEW_OFF = (
    "Okay - moderators won't read our conversations, and any copies made for review are "
    "deleted. (A conversation where someone may be in danger can still be reviewed for "
    "safety, as the privacy notice says.)"
)
REVIEW_STATUS = "Moderator review of our conversations is {state}. Use /review on or /review off."
UNKNOWN_COMMAND = "I don't know that command. " + COMMANDS_HELP

# Discord's "/" menu: each application command and the line shown beside it (at most 100
# characters). The Discord adapter registers exactly these; `solace health` compares what Discord
# has registered with them.
DISCORD_COMMANDS = {
    "help": "What I can do, and the commands",
    "privacy": "What is stored about you, for how long, and who may see it",
    "reset": "Start a fresh conversation (earlier messages stay stored for /export)",
    "forget": "Erase everything stored about you, after you confirm",
    "export": "Get a copy of everything stored about you, as a JSON file",
    "country": "Your country, so I can point to local support services",
    "review": "Let trained moderators read our conversations to improve Solace (off by default)",
    "stats": "Row counts for the people who run this bot (never content)",
}


def notice_text(retention_days: int) -> str:
    """The consent/privacy notice shown on first contact and by /privacy."""
    return NOTICE_TEMPLATE.format(retention_days=retention_days)


def welcome_text(retention_days: int) -> str:
    """What a platform's /start shows: a greeting plus the notice."""
    return notice_text(retention_days) + "\n\nHow are you feeling today?"
