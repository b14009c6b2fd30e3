"""Reading data-set files: JSON arrays, JSON Lines, gzip; errors that name file, record, reason.

A truncated array, a wrong top-level type or bytes that are not UTF-8 raise `DatasetError`
with the file, the index of the record where it happened and what to do. The array is parsed
record by record (`json.JSONDecoder.raw_decode`) so the failing record can be named.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_WHITESPACE = re.compile(r"[ \t\n\r]*")


class DatasetError(ValueError):
    """A data set cannot be read. The message names the file, the record and the reason."""

    def __init__(self, path: Path | str, record: int | None, reason: str) -> None:
        self.path = str(path)
        self.record = record
        self.reason = reason
        where = f"{self.path}: record {record}" if record is not None else self.path
        super().__init__(f"{where}: {reason}")


def _line_col(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"line {line}, column {column}"


def read_text(path: Path) -> str:
    """The file's text (gunzipped if it ends in .gz), strictly UTF-8; a BOM is allowed."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(path, None, f"cannot read the file ({exc.strerror or exc})") from exc
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DatasetError(path, None, f"not a valid gzip file ({exc})") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _not_utf8_error(path, raw, exc) from exc


def _not_utf8_error(path: Path, raw: bytes, exc: UnicodeDecodeError) -> DatasetError:
    """Name the record holding the first invalid byte (parsed with surrogate escapes)."""
    text = raw.decode("utf-8-sig", errors="surrogateescape")
    offset = len(raw[: exc.start].decode("utf-8-sig", errors="surrogateescape"))
    record: int | None = None
    try:
        for index, (_obj, start, end) in enumerate(iter_records(text, path)):
            if start <= offset < end:
                record = index
                break
    except DatasetError:
        record = None
    reason = (
        f"not UTF-8: byte 0x{raw[exc.start]:02x} at byte offset {exc.start} "
        f"({_line_col(text, offset)}); re-save the file as UTF-8"
    )
    return DatasetError(path, record, reason)


def iter_records(text: str, path: Path) -> Iterator[tuple[Any, int, int]]:
    """Yield (record, start, end) from a JSON array, a single JSON object or JSON Lines."""
    start = _WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
    if start >= len(text):
        raise DatasetError(path, None, "the file is empty; expected a JSON array or JSON Lines")
    first = text[start]
    if first == "[":
        yield from _iter_array(text, start, path)
    elif first == "{":
        yield from _iter_lines(text, path)
    else:
        raise DatasetError(
            path,
            None,
            f"wrong top-level type: expected a JSON array of dialogues or JSON Lines of "
            f"dialogue objects, found {text[start : start + 20]!r}",
        )


def _iter_array(text: str, pos: int, path: Path) -> Iterator[tuple[Any, int, int]]:
    decoder = json.JSONDecoder()
    pos = _WHITESPACE.match(text, pos + 1).end()  # type: ignore[union-attr]
    if text.startswith("]", pos):
        return
    index = 0
    while True:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                path, index, f"truncated or malformed JSON: {exc.msg} ({_line_col(text, exc.pos)})"
            ) from exc
        yield obj, pos, end
        index += 1
        pos = _WHITESPACE.match(text, end).end()  # type: ignore[union-attr]
        if pos >= len(text):
            raise DatasetError(path, index, "truncated JSON: the array is never closed with ']'")
        if text[pos] == "]":
            tail = _WHITESPACE.match(text, pos + 1).end()  # type: ignore[union-attr]
            if tail != len(text):
                raise DatasetError(
                    path, None, f"extra data after the JSON array ({_line_col(text, tail)})"
                )
            return
        if text[pos] != ",":
            raise DatasetError(
                path, index, f"malformed JSON: expected ',' or ']' ({_line_col(text, pos)})"
            )
        pos = _WHITESPACE.match(text, pos + 1).end()  # type: ignore[union-attr]


def _iter_lines(text: str, path: Path) -> Iterator[tuple[Any, int, int]]:
    """JSON Lines; a whole file holding one (pretty-printed) object is one record."""
    decoder = json.JSONDecoder()
    start = _WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
    try:
        obj, end = decoder.raw_decode(text, start)
    except json.JSONDecodeError:
        obj, end = None, -1
    if end != -1 and _WHITESPACE.match(text, end).end() == len(text):  # type: ignore[union-attr]
        yield obj, start, end
        return
    index = 0
    offset = 0
    # Split on "\n" only: str.splitlines would also break at U+2028 etc., valid inside JSON strings.
    for line in text.split("\n"):
        line_start, offset = offset, offset + len(line) + 1
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                path,
                index,
                f"truncated or malformed JSON Lines record: {exc.msg} (line {text.count(chr(10), 0, line_start) + 1}"
                f", column {exc.colno})",
            ) from exc
        yield record, line_start, offset
        index += 1
