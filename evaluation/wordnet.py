"""WordNet 3.0 for NLTK's METEOR, built offline from Debian's `wordnet-base` files.

NLTK's WordNet data is not installable from PyPI. Debian's `wordnet-base` (+ `wordnet-sense-index`)
put WordNet 3.0 under /usr/share/wordnet, but NLTK only reads corpora found on `nltk.data.path`
(a symlink is refused) and needs a `lexnames` file Debian does not ship. So at run time we copy
the files into `<cache>/corpora/wordnet/`, write `lexnames` with the 45 fixed lexicographer file
names, and put `<cache>` first on `nltk.data.path`.
"""

from __future__ import annotations

import logging
import os
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")
# The files WordNetCorpusReader opens (data/index per part of speech, exception lists, sense
# index and lemma counts); lexnames is written below.
REQUIRED_FILES = tuple(
    f"{kind}.{pos}" for kind in ("data", "index") for pos in ("noun", "verb", "adj", "adv")
) + tuple(f"{pos}.exc" for pos in ("noun", "verb", "adj", "adv"))
OPTIONAL_FILES = (
    "index.sense",
    "cntlist.rev",
    "cntlist",
    "sentidx.vrb",
    "sents.vrb",
    "verb.Framestext",
)
# WordNet 3.0's lexicographer files: number, name, syntactic category (1 noun, 2 verb, 3 adj,
# 4 adv). Fixed by the WordNet distribution (lexnames(5WN)).
LEXNAMES: tuple[tuple[str, int], ...] = (
    ("adj.all", 3), ("adj.pert", 3), ("adv.all", 4), ("noun.Tops", 1), ("noun.act", 1),
    ("noun.animal", 1), ("noun.artifact", 1), ("noun.attribute", 1), ("noun.body", 1),
    ("noun.cognition", 1), ("noun.communication", 1), ("noun.event", 1), ("noun.feeling", 1),
    ("noun.food", 1), ("noun.group", 1), ("noun.location", 1), ("noun.motive", 1),
    ("noun.object", 1), ("noun.person", 1), ("noun.phenomenon", 1), ("noun.plant", 1),
    ("noun.possession", 1), ("noun.process", 1), ("noun.quantity", 1), ("noun.relation", 1),
    ("noun.shape", 1), ("noun.state", 1), ("noun.substance", 1), ("noun.time", 1),
    ("verb.body", 2), ("verb.change", 2), ("verb.cognition", 2), ("verb.communication", 2),
    ("verb.competition", 2), ("verb.consumption", 2), ("verb.contact", 2), ("verb.creation", 2),
    ("verb.emotion", 2), ("verb.motion", 2), ("verb.perception", 2), ("verb.possession", 2),
    ("verb.social", 2), ("verb.stative", 2), ("verb.weather", 2), ("adj.ppl", 3),
)  # fmt: skip


class WordNetUnavailable(RuntimeError):
    """WordNet files are missing; the message says how to install them."""


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/solace/nltk_data` (or ~/.cache/...)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "solace" / "nltk_data"


def lexnames_text() -> str:
    """The `lexnames` file: "NN\\tname\\tcategory" per line, 45 lines."""
    return "".join(f"{i:02d}\t{name}\t{cat}\n" for i, (name, cat) in enumerate(LEXNAMES))


def prepare_wordnet(
    source: str | Path = DEBIAN_WORDNET_DIR, cache_dir: str | Path | None = None
) -> Path:
    """Copy WordNet into `<cache>/corpora/wordnet` (once) and return `<cache>`.

    Raises:
        WordNetUnavailable: when `source` lacks a required file.
    """
    source = Path(source)
    missing = [name for name in REQUIRED_FILES if not (source / name).is_file()]
    if missing:
        raise WordNetUnavailable(
            f"WordNet 3.0 not found in {source} (missing {', '.join(missing[:3])}...). "
            "Install Debian's wordnet-base and wordnet-sense-index "
            "(bash scripts/install-system-deps.sh)."
        )
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    target = root / "corpora" / "wordnet"
    target.mkdir(parents=True, exist_ok=True)
    for name in REQUIRED_FILES + OPTIONAL_FILES:
        src = source / name
        dst = target / name
        if src.is_file() and (not dst.is_file() or dst.stat().st_size != src.stat().st_size):
            shutil.copyfile(src, dst)  # a real copy: NLTK refuses symlinks out of its path
    lexnames = target / "lexnames"
    if not lexnames.is_file() or lexnames.read_text() != lexnames_text():
        lexnames.write_text(lexnames_text())
    return root


def load_wordnet(
    source: str | Path = DEBIAN_WORDNET_DIR, cache_dir: str | Path | None = None
) -> Any:
    """An NLTK `WordNetCorpusReader` over the prepared copy (see module docstring); cached."""
    return _load_wordnet(str(source), str(cache_dir) if cache_dir else None)


@lru_cache(maxsize=4)
def _load_wordnet(source: str, cache_dir: str | None) -> Any:
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    root = prepare_wordnet(source, cache_dir)
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    wn_root = nltk.data.find("corpora/wordnet")
    reader = WordNetCorpusReader(wn_root, None)
    logger.info("WordNet %s loaded from %s", reader.get_version(), wn_root)
    return reader


class NoSynonyms:
    """A stand-in for WordNet with no synsets: NLTK's METEOR then matches exact + stem only.

    Used only when the user chose `meteor_without_wordnet = "exact_stem"`; the metric is then
    reported under its own name, never as METEOR.
    """

    def synsets(self, *args: object, **kwargs: object) -> list[Any]:
        """No synonyms for any word."""
        return []
