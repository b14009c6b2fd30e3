"""Correlation ids for log lines: keyed, short, and never the platform id or the database key.

A log line may say *which* person an event concerns (so an operator can follow one
conversation's failures) but must not let anyone who reads the logs recover that person.
An unkeyed hash of "telegram:<id>" is reversible by enumeration (Telegram ids are ~10 digits);
the database's own pseudonym would let logs be joined to stored rows. So log ids are HMACs under
a separate *log key*, derived from the pseudonym secret with a fixed label: stable across
restarts, different from every stored key, and useless without the secret.
"""

from __future__ import annotations

import hashlib
import hmac

LOG_KEY_LABEL = b"solace/log-correlation-ids/v1"
LOG_ID_HEX_CHARS = 12  # 48 bits: unique enough to follow one person through a day of logs


class LogIds:
    """Makes the short, keyed ids that log lines carry instead of people's identities.

    Args:
        log_key: HMAC-SHA256(pseudonym secret, LOG_KEY_LABEL), from `MemoryStore.derive_key`.
    """

    def __init__(self, log_key: bytes) -> None:
        if len(log_key) < 16:
            raise ValueError("the log key must be at least 16 bytes")
        self._key = log_key

    def of_key(self, user_key: str) -> str:
        """The log id of a stored pseudonym; never a prefix of the pseudonym itself."""
        mac = hmac.new(self._key, user_key.encode("utf-8"), hashlib.sha256)
        return mac.hexdigest()[:LOG_ID_HEX_CHARS]
