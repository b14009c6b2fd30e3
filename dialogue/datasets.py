"""ESConv and ExTES loaders: files, data-set specs and the load report.

Formats read:
- ESConv as Hugging Face `thu-coai/esconv` split files (JSON Lines named `.json`), the raw
  `ESConv.json` (a JSON array; `seeker`/`supporter`, `content`, `annotation`) and the 2024
  `FailedESConv.json` (`speaker`/`listener`, raw strategy labels);
- ExTES (`[{scene, description, content: [{"User": ...} | {"AI": ..., "AI Strategy": ...}]}]`),
  with its known irregularities repaired or rejected, each counted in the `LoadReport`.

Specs (`load_spec`): `esconv:train|valid|test|all|failed`, `extes[:train|test|all]` (a
scene-stratified 80/20 split, seed 42, of `extes/ExTES.json`), `PATH` or `PATH:train|test`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dialogue.datafile import DatasetError, iter_records, read_text
from dialogue.records import REASONS, LoadReport, RecordIssue, parse_record
from dialogue.types import Dialogue

__all__ = [
    "REASONS",
    "DatasetError",
    "LoadReport",
    "LoadResult",
    "RecordIssue",
    "data_dir",
    "load_esconv",
    "load_extes",
    "load_path",
    "load_spec",
]

logger = logging.getLogger(__name__)

Schema = Literal["esconv", "extes"]
DATA_DIR_ENV = "SOLACE_DATA_DIR"
ESCONV_SPLITS = ("train", "valid", "test")
EXTES_FILES = ("extes/ExTES.json", "extes/ExTES.json.gz")
EXTES_FALLBACK = "extes/ExTES_recovered.json"
SPLIT_SEED = 42
SPLIT_TEST_SIZE = 0.2
_SNIFF_RECORDS = 50


@dataclass
class LoadResult:
    """The dialogues that loaded, and the report of everything that was repaired or rejected."""

    dialogues: list[Dialogue]
    report: LoadReport

    def __len__(self) -> int:
        return len(self.dialogues)


def data_dir() -> Path:
    """The data directory from `SOLACE_DATA_DIR`; `DatasetError` if it is unset or missing."""
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    if not value:
        raise DatasetError(
            DATA_DIR_ENV,
            None,
            "not set: point it at the directory holding esconv/ and extes/, "
            "e.g. export SOLACE_DATA_DIR=/path/to/data",
        )
    path = Path(value).expanduser()
    if not path.is_dir():
        raise DatasetError(path, None, f"{DATA_DIR_ENV} is not a directory; fix the variable")
    return path


def _sniff_schema(records: list[Any], path: Path) -> Schema:
    """ "esconv" if the records carry `dialog`, "extes" if `content`, decided by majority."""
    votes = {"esconv": 0, "extes": 0}
    for record in records[:_SNIFF_RECORDS]:
        if isinstance(record, dict):
            votes["esconv"] += isinstance(record.get("dialog"), list)
            votes["extes"] += isinstance(record.get("content"), list)
    if not any(votes.values()):
        raise DatasetError(
            path,
            0,
            "not a dialogue data set: no record has a 'dialog' list (ESConv) or a 'content' "
            "list (ExTES)",
        )
    return "esconv" if votes["esconv"] >= votes["extes"] else "extes"


def _load_file(
    path: Path, schema: Schema | None, merge_consecutive: bool, id_prefix: str | None = None
) -> LoadResult:
    path = Path(path)
    if path.is_dir():
        return _load_split_dir(path, schema, merge_consecutive)
    text = read_text(path)
    records = [record for record, _start, _end in iter_records(text, path)]
    schema = schema or _sniff_schema(records, path)
    stem = path.name.split(".")[0]
    prefix = id_prefix or f"{schema}:{stem}"
    report = LoadReport(source=str(path))
    dialogues = []
    for index, record in enumerate(records):
        dialogue = parse_record(
            record, index, schema, f"{prefix}:{index}", report, merge_consecutive
        )
        if dialogue is not None:
            dialogues.append(dialogue)
    logger.info(
        "loaded %s: %d of %d records (%s)", path.name, report.loaded, report.records, schema
    )
    return LoadResult(dialogues, report)


def _load_split_dir(path: Path, schema: Schema | None, merge_consecutive: bool) -> LoadResult:
    """A directory of `train/valid/test.json` split files (such as `esconv/hf_split`)."""
    files = [
        path / f"{split}.json" for split in ESCONV_SPLITS if (path / f"{split}.json").is_file()
    ]
    if not files:
        raise DatasetError(path, None, "a directory must hold train.json, valid.json or test.json")
    return _combine([_load_file(f, schema, merge_consecutive) for f in files], str(path))


def _combine(results: list[LoadResult], source: str) -> LoadResult:
    report = LoadReport(source=source)
    dialogues: list[Dialogue] = []
    for result in results:
        report.merge(result.report)
        dialogues.extend(result.dialogues)
    return LoadResult(dialogues, report)


def load_path(path: str | Path, *, merge_consecutive: bool = False) -> LoadResult:
    """Load any supported file (or split directory), sniffing ESConv vs ExTES."""
    return _load_file(Path(path), None, merge_consecutive)


def load_esconv(path: str | Path, *, merge_consecutive: bool = False) -> LoadResult:
    """Load ESConv: an HF split file (JSON Lines), raw `ESConv.json`, `FailedESConv.json`,
    a JSON array of records, or a directory holding train/valid/test.json."""
    return _load_file(Path(path), "esconv", merge_consecutive)


def load_extes(path: str | Path, *, merge_consecutive: bool = False) -> LoadResult:
    """Load an ExTES file (JSON array, optionally gzipped), repairing what can be repaired."""
    return _load_file(Path(path), "extes", merge_consecutive)


def _esconv_spec(split: str, merge_consecutive: bool) -> LoadResult:
    root = data_dir() / "esconv"
    if split == "failed":
        return load_esconv(root / "FailedESConv.json", merge_consecutive=merge_consecutive)
    splits = ESCONV_SPLITS if split == "all" else (split,)
    results = []
    for name in splits:
        path = root / "hf_split" / f"{name}.json"
        if not path.is_file():
            raise DatasetError(path, None, "missing; SOLACE_DATA_DIR must hold esconv/hf_split/")
        results.append(_load_file(path, "esconv", merge_consecutive))
    return _combine(results, f"esconv:{split}")


def _extes_spec(split: str, merge_consecutive: bool) -> LoadResult:
    root = data_dir()
    candidates = [root / name for name in EXTES_FILES]
    path = next((p for p in candidates if p.is_file()), None)
    warning = None
    if path is None:
        path = root / EXTES_FALLBACK
        if not path.is_file():
            raise DatasetError(
                candidates[0], None, "missing: put the full ExTES file there (see docs/data.md)"
            )
        warning = (
            f"{candidates[0]} not found; using the 11-dialogue fragment {path.name} "
            "(not enough for training or statistics)"
        )
    result = _load_file(path, "extes", merge_consecutive, id_prefix="extes:ExTES")
    result.report.source = f"extes:{split} ({path})"
    if warning:
        result.report.warnings.append(warning)
        logger.warning(warning)
    return _select_split(result, split)


def _select_split(result: LoadResult, split: str) -> LoadResult:
    """The train or test part of a scene-stratified 80/20 split (seed 42); "all" is everything."""
    if split == "all":
        return result
    from dialogue.splits import stratified_split

    train, test = stratified_split(result.dialogues, SPLIT_TEST_SIZE, SPLIT_SEED)
    result.report.notes.append(
        f"scene-stratified split (test_size={SPLIT_TEST_SIZE}, seed={SPLIT_SEED}): "
        f"train {len(train)}, test {len(test)}; this is the {split} part"
    )
    return LoadResult(train if split == "train" else test, result.report)


def load_spec(spec: str, *, merge_consecutive: bool = False) -> LoadResult:
    """Load a data-set spec: `esconv:train|valid|test|all|failed`, `extes[:train|test|all]`,
    a file or directory path, or `PATH:train|test` (scene-stratified 80/20 split, seed 42)."""
    name, _, split = spec.strip().partition(":")
    if name == "esconv":
        split = split or "all"
        if split not in (*ESCONV_SPLITS, "all", "failed"):
            raise DatasetError(
                spec, None, "unknown ESConv split; use train, valid, test, all or failed"
            )
        return _esconv_spec(split, merge_consecutive)
    if name == "extes":
        split = split or "all"
        if split not in ("train", "test", "all"):
            raise DatasetError(spec, None, "unknown ExTES split; use train, test or all")
        return _extes_spec(split, merge_consecutive)
    path = Path(spec).expanduser()
    if path.exists():
        return load_path(path, merge_consecutive=merge_consecutive)
    base, _, split = spec.rpartition(":")
    if base and split in ("train", "test", "all") and Path(base).expanduser().exists():
        result = load_path(Path(base).expanduser(), merge_consecutive=merge_consecutive)
        return _select_split(result, split)
    raise DatasetError(
        spec,
        None,
        "no such file, and not a known spec; use esconv:train|valid|test|all|failed, "
        "extes[:train|test|all], a path, or PATH:train|test",
    )
