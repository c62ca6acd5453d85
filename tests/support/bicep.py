"""A small Bicep scanner for the infra/ tests (tests/project/test_infra_*.py).

There is no Bicep parser here (the compiler cannot be installed), so `_Bicep` below is a small scanner:
it blanks comments and string literals (with `${...}` interpolation and nested strings) so brackets,
keys and declarations can be found with plain regexes. It is written for the style of the files in
infra/ (one declaration or key per line, multi-line objects and arrays) and fails loudly, not silently,
when it meets something it cannot read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tests.support.paths import REPO

ROOT = REPO
INFRA = ROOT / "infra"


# --------------------------------------------------------------------------------------------------------
# A small Bicep scanner (see the module docstring for what it can and cannot read).


class BicepScanError(AssertionError):
    pass


def _string_end(text: str, i: int) -> int:
    """Index just past the string literal starting at text[i] == "'"."""
    if text.startswith("'''", i):
        end = text.find("'''", i + 3)
        if end < 0:
            raise BicepScanError(f"unterminated ''' string at offset {i}")
        return end + 3
    i += 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == "'":
            return i + 1
        elif text.startswith("${", i):
            i = _code_end(text, i + 2)
        elif text[i] == "\n":
            raise BicepScanError(f"newline inside a string at offset {i}")
        else:
            i += 1
    raise BicepScanError("unterminated string")


def _code_end(text: str, i: int) -> int:
    """Index just past the `}` closing an interpolation whose code starts at text[i]."""
    depth = 0
    while i < len(text):
        char = text[i]
        if char == "'":
            i = _string_end(text, i)
            continue
        if char in "{[(":
            depth += 1
        elif char in "}])":
            if depth == 0:
                return i + 1
            depth -= 1
        i += 1
    raise BicepScanError("unterminated interpolation")


def _mask(text: str, *, strings: bool = True) -> str:
    """The text with comments (and string contents, unless strings=False) blanked, offsets kept."""
    out = list(text)

    def blank(start: int, end: int) -> None:
        for k in range(start, end):
            if out[k] != "\n":
                out[k] = " "

    i = 0
    while i < len(text):
        if text[i] == "'":
            end = _string_end(text, i)
            if strings:
                blank(i + 1, end - 1)
            i = end
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            blank(i, end)
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise BicepScanError("unterminated /* comment")
            blank(i, end + 2)
            i = end + 2
        else:
            i += 1
    return "".join(out)


def _closing(masked: str, open_index: int) -> int:
    """Index of the bracket closing the one at masked[open_index]."""
    pairs = {"{": "}", "[": "]", "(": ")"}
    stack = [pairs[masked[open_index]]]
    for k in range(open_index + 1, len(masked)):
        char = masked[k]
        if char in pairs:
            stack.append(pairs[char])
        elif char in ")]}":
            if char != stack.pop():
                raise BicepScanError(f"mismatched {char!r} at offset {k}")
            if not stack:
                return k
    raise BicepScanError(f"unclosed {masked[open_index]!r} at offset {open_index}")


@dataclass(frozen=True)
class Block:
    """An object or array literal: text[start] is the opening bracket, text[end] the closing one."""

    text: str
    masked: str
    start: int
    end: int

    def lines(self) -> list[tuple[str, str, int]]:
        """(line, masked line, offset) of the lines directly inside the block (depth 1)."""
        result = []
        depth = 0
        offset = self.start + 1
        for line in self.masked[self.start + 1 : self.end].split("\n"):
            if depth == 0:
                result.append((self.text[offset : offset + len(line)], line, offset))
            for char in line:
                depth += char in "{[("
                depth -= char in "}])"
            offset += len(line) + 1
        return result

    def keys(self) -> dict[str, str]:
        """Top-level `key: value` pairs (value: the rest of the line, unparsed)."""
        found: dict[str, str] = {}
        for line, masked, _ in self.lines():
            match = re.match(r"\s*([A-Za-z_]\w*|'[^']*')\s*:\s*(.*?)\s*$", masked)
            if match:
                key = line[match.start(1) : match.end(1)].strip("'")
                found[key] = line[match.start(2) : match.end(2)]
        return found

    def child(self, key: str) -> Block:
        """The object or array that is the value of top-level `key`."""
        for _line, masked, offset in self.lines():
            match = re.match(rf"\s*{re.escape(key)}\s*:\s*([{{\[])", masked)
            if match:
                open_index = offset + match.start(1)
                return Block(self.text, self.masked, open_index, _closing(self.masked, open_index))
        raise BicepScanError(f"no object or array {key!r} in block at offset {self.start}")

    def items(self) -> list[Block]:
        """The object literals directly inside an array."""
        blocks = []
        k = self.start + 1
        while k < self.end:
            if self.masked[k] == "{":
                close = _closing(self.masked, k)
                blocks.append(Block(self.text, self.masked, k, close))
                k = close
            k += 1
        return blocks

    @property
    def source(self) -> str:
        return self.text[self.start : self.end + 1]


@dataclass(frozen=True)
class Resource:
    symbol: str
    type: str  # without the api version
    api_version: str
    existing: bool
    condition: str | None
    body: Block


@dataclass(frozen=True)
class Module:
    symbol: str
    path: str
    body: Block


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str | None


class _Bicep:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.text = path.read_text()
        self.masked = _mask(self.text)

    def _declarations(self, keyword: str) -> list[tuple[re.Match[str], Block]]:
        pattern = re.compile(
            rf"^{keyword}\s+(\w+)\s+'([^\n']*)'\s*(existing\s*)?=\s*(?:if\s*\(([^\n]*)\)\s*)?([{{\[])", re.M
        )
        found = []
        for match in pattern.finditer(self.masked):
            open_index = match.start(5)
            found.append(
                (match, Block(self.text, self.masked, open_index, _closing(self.masked, open_index)))
            )
        if re.search(rf"^[ \t]+{keyword}\s+\w+\s+'", self.masked, re.M):
            raise BicepScanError(f"{self.path}: nested `{keyword}` declarations are not read by this scanner")
        declared = len(re.findall(rf"^{keyword}\s", self.masked, re.M))
        if declared != len(found):
            raise BicepScanError(f"{self.path}: read {len(found)} of {declared} `{keyword}` declarations")
        return found

    def _original(self, match: re.Match[str], group: int) -> str:
        return self.text[match.start(group) : match.end(group)]

    @property
    def resources(self) -> list[Resource]:
        result = []
        for match, body in self._declarations("resource"):
            if body.masked[body.start] == "[":  # a loop: `[for x in y: {...}]`
                body = body.items()[0]
            result.append(
                Resource(
                    symbol=match.group(1),
                    type=self._original(match, 2).split("@")[0],
                    api_version=self._original(match, 2).partition("@")[2],
                    existing=bool(match.group(3)),
                    condition=match.group(4).strip() if match.group(4) else None,
                    body=body,
                )
            )
        return result

    @property
    def modules(self) -> list[Module]:
        return [Module(m.group(1), self._original(m, 2), body) for m, body in self._declarations("module")]

    @property
    def params(self) -> dict[str, Param]:
        found = {}
        for match in re.finditer(r"^param\s+(\w+)\s+(\w+)[ \t]*(=[ \t]*\S[^\n]*)?$", self.masked, re.M):
            default = None
            if match.group(3):  # the masked text ends before a trailing comment; the original does not
                default = self.text[
                    match.start(3) + 1 : match.start(3) + len(match.group(3).rstrip())
                ].strip()
            found[match.group(1)] = Param(match.group(1), match.group(2), default)
        if len(found) != len(re.findall(r"^param\s", self.masked, re.M)):
            raise BicepScanError(f"{self.path}: could not read every `param` declaration")
        return found

    @property
    def outputs(self) -> set[str]:
        return set(re.findall(r"^output\s+(\w+)\s", self.masked, re.M))

    @property
    def code(self) -> str:
        """The text without comments (strings kept)."""
        return _mask(self.text, strings=False)

    def resource(self, symbol: str) -> Resource:
        matches = [r for r in self.resources if r.symbol == symbol]
        assert len(matches) == 1, f"{self.path.name}: expected one resource {symbol!r}, found {len(matches)}"
        return matches[0]


@cache
def bicep(relative: str) -> _Bicep:
    return _Bicep(INFRA / relative)


def all_bicep() -> list[_Bicep]:
    return [bicep(str(p.relative_to(INFRA))) for p in sorted(INFRA.rglob("*.bicep"))]


def _string(value: str) -> str:
    match = re.fullmatch(r"'((?:[^'\\]|\\.)*)'", value.strip())
    assert match, f"expected a string literal, got {value!r}"
    return match.group(1)
