"""Reading a large JSON document a piece at a time, so that what is kept is only what the reader wants.

`json.loads` builds every value at once: 64 MB of `{},` are 21 million dicts and 1.5 GB. Here the top-level object
is walked member by member (`read_members`), a value nobody wants is skipped by its brackets and strings without
being built (`value_end`), and an array is decoded a chunk of whole elements at a time (`read_array`), each element
within a size and a depth. Positions are indexes into the text; errors are `json.JSONDecodeError` where they are.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from json.decoder import scanstring

SPACE = re.compile(r"[ \t\n\r]*")
STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
BRACKET_OR_STRING = re.compile(rf"{STRING}|[\[\]{{}}]")
TOKEN = re.compile(rf"{STRING}|[\[\]{{}},]")  # what decides where an array's elements begin and end
SCALAR_END = re.compile(r"[,\]}\s]")
CHUNK = 64 * 1024  # characters decoded at once: whole elements, about this many
MAX_DEPTH = 64  # an element nested deeper is not decoded (the decoder recurses; a COCO element nests 3 deep)
TOO_DEEP = -1  # what on_too_large is given as the length of an element nested past MAX_DEPTH


def space(text: str, i: int) -> int:
    return SPACE.match(text, i).end()


def expect(text: str, i: int, expected: str, what: str) -> int:
    """The index after `expected` at text[i] (after whitespace), or JSONDecodeError saying `what` was expected."""
    i = space(text, i)
    if not text.startswith(expected, i):
        raise json.JSONDecodeError(f"Expecting {what}", text, i)
    return i + len(expected)


def value_end(text: str, i: int) -> int:
    """The index just past the JSON value at text[i], found by its brackets and strings without building it."""
    if text.startswith('"', i):
        return scanstring(text, i + 1)[1]
    if not text.startswith(("[", "{"), i):
        end = SCALAR_END.search(text, i)
        return end.start() if end else len(text)
    depth = 0
    for token in BRACKET_OR_STRING.finditer(text, i):
        if token.group() in ("[", "{"):
            depth += 1
        elif token.group() in ("]", "}"):
            depth -= 1
            if depth == 0:
                return token.end()
    raise json.JSONDecodeError("Unterminated array or object", text, len(text))


def read_members(text: str, readers: dict[str, Callable[[int], int]]) -> set[str]:
    """Walk the object `text` holds: a member named in `readers` is handed the index its value starts at and
    returns the index past it; every other value is skipped unbuilt. Returns the names found; JSONDecodeError
    when `text` is not one object."""
    i, found, first = expect(text, 0, "{", "'{'"), set(), True
    while not text.startswith("}", i := space(text, i)):
        if not first:
            i = space(text, expect(text, i, ",", "',' delimiter"))
        name, i = scanstring(text, expect(text, i, '"', "property name enclosed in double quotes"))
        i = space(text, expect(text, i, ":", "':' delimiter"))
        i, first = readers[name](i) if name in readers else value_end(text, i), False
        found.add(name)
    return found


def read_array(text: str, i: int, decoder: json.JSONDecoder, on_element: Callable[[int, object], None],
               on_too_large: Callable[[int, int], None], max_element: int) -> int:
    """Decode the array at text[i], handing `on_element(index, value)` each element, a CHUNK of whole elements
    decoded at a time. An element longer than `max_element` characters or nested deeper than MAX_DEPTH is never
    decoded: `on_too_large(index, length or TOO_DEEP)` instead. Returns the index past the array."""
    start, count = expect(text, i, "[", "'['"), 0
    while True:
        cut = _likely_cut(text, start, max_element)
        values = _decoded(text, start, cut, decoder) if cut is not None else None
        outcome = CHUNK_READ
        if values is None:  # no likely cut, or not one between elements: token by token
            outcome, cut, element = _scan(text, start, max_element)
            if outcome in (TOO_LONG, NESTED):
                values = _decoded(text, start, max(start, element - 1), decoder, strict=True)
            else:
                values = _decoded(text, start, cut, decoder, strict=True)
        for value in values:
            on_element(count, value)
            count += 1
        if outcome == ARRAY_READ:
            return cut + 1
        if outcome in (TOO_LONG, NESTED):
            end = value_end(text, space(text, element))
            on_too_large(count, TOO_DEEP if outcome == NESTED else end - element)
            count += 1
            after = space(text, end)
            if text.startswith("]", after):
                return after + 1
            cut = expect(text, after, ",", "',' delimiter") - 1
        start = cut + 1


CONTAINERS_CUT = re.compile(r"[}\]]\s*(,)\s*[{\[]")  # between two arrays or objects: most likely between elements
COMMA = re.compile(",")
CHUNK_READ, ARRAY_READ, TOO_LONG, NESTED = "chunk", "array", "too long", "too deep"  # what _scan found


def _likely_cut(text: str, start: int, max_element: int) -> int | None:
    """A comma CHUNK characters on from `start` that is likely to lie between two elements (checked by decoding
    what comes before it); None when there is none within reach."""
    window = (start + CHUNK, start + CHUNK + max_element)
    found = CONTAINERS_CUT.search(text, *window) or COMMA.search(text, *window)
    return (found.start(1) if found.re is CONTAINERS_CUT else found.start()) if found else None


def _decoded(text: str, start: int, end: int, decoder: json.JSONDecoder, strict: bool = False) -> list | None:
    """The elements text[start:end] holds, or None when it does not hold whole elements (JSONDecodeError,
    placed in the whole text, when `strict`)."""
    try:
        return decoder.decode(f"[{text[start:end]}]")
    except json.JSONDecodeError as exc:
        if strict:
            raise json.JSONDecodeError(exc.msg, text, start + exc.pos - 1) from None
    except RecursionError:
        if strict:
            raise
    return None


def _scan(text: str, start: int, max_element: int) -> tuple[str, int, int]:
    """(outcome, where, element) reading tokens from `start`, an element's start: CHUNK_READ with the comma that
    ends the chunk, ARRAY_READ with the bracket that ends the array, or TOO_LONG / NESTED with the start of the
    element that is."""
    depth, element = 1, start
    for token in TOKEN.finditer(text, start):
        kind = token.group()
        depth += 1 if kind in ("[", "{") else -1 if kind in ("]", "}") else 0
        ends_element = depth == 0 or (depth == 1 and kind == ",")
        if depth > MAX_DEPTH:
            return NESTED, token.start(), element
        if (token.start() if ends_element else token.end()) - element > max_element:
            return TOO_LONG, token.start(), element
        if depth == 0:
            return ARRAY_READ, token.start(), element
        if ends_element:
            if token.end() - start >= CHUNK:
                return CHUNK_READ, token.start(), element
            element = token.end()
    raise json.JSONDecodeError("Unterminated array", text, len(text))
