"""What the user asked for: the pins that decide a cell, from a requirements file or the
command line, the others listed as ignored."""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..builds import PROJECT
from ..cells import STACKS
from ._errors import StackError

GWS = PROJECT  # the handler under test, by its registry name
# The pins that decide a cell: the server, the handler, the agent, Flask's own line,
# and the APM layers (read now, served once their cells come).
MATTERS = ("gevent", "greenlet", GWS, "flask", "werkzeug", "jinja2", "markupsafe",
           "itsdangerous", "click", "newrelic")
LAYERS = ("elastic-apm", "sentry-sdk", "ddtrace")
LAYER_PREFIXES = ("opentelemetry-",)
# What `python -m app` imports; filled in when the file leaves it out.
SERVER_NEEDS = ("gevent", "flask", "newrelic")
LAST_GWS = STACKS["today"][GWS]["version"]  # the last release there is (2017)


def matters(name: str) -> bool:
    name = canonicalize_name(name)
    return name in MATTERS or name in LAYERS or name.startswith(LAYER_PREFIXES)


@dataclass
class Request:
    name: str  # the stack's name: the file's stem, or "command-line"
    requirements: dict[str, Requirement]  # canonical name -> requirement, those that matter
    ignored: list[str] = field(default_factory=list)

    def exact(self, name: str) -> str | None:
        """The version of an exact ``==`` pin of ``name`` (no wildcard), else None."""
        req = self.requirements.get(canonicalize_name(name))
        specs = list(req.specifier) if req else []
        if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
            return specs[0].version
        return None

    def pinned(self) -> dict[str, str]:
        """{canonical name: version} of the exact pins."""
        return {n: v for n in self.requirements if (v := self.exact(n)) is not None}

    def layers(self) -> list[str]:
        return [n for n in self.requirements if n in LAYERS or n.startswith(LAYER_PREFIXES)]


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """A requirements file's lines, continuations joined, comments dropped."""
    text = re.sub(r"\\\n", " ", text)
    for number, line in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if line:
            yield number, line


def read_requirements(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[str, str]]:
    """``[(where, requirement text)]`` of a pip requirements file, ``-r`` included."""
    path = Path(path)
    if not path.is_file():
        raise StackError(f"{path}: no such file; pass the path of a requirements file (-r FILE)")
    if path.resolve() in seen:
        raise StackError(f"{path}: includes itself (-r cycle); remove the -r line")
    out = []
    for number, line in _logical_lines(path.read_text(encoding="utf-8", errors="replace")):
        where = f"{path.name}:{number}"
        include = re.match(r"^(-r|--requirement)[\s=]+(\S+)$", line)
        if include:
            out += read_requirements(path.parent / include.group(2), (*seen, path.resolve()))
            continue
        if line.startswith("-"):  # -i, --hash on its own, -e, -c: nothing to pin
            out.append((where, line))
            continue
        out.append((where, re.split(r"\s+--?\w", " " + line, maxsplit=1)[0].strip()
                    if " --" in line else line))
    return out


def parse(lines: list[tuple[str, str]], name: str) -> Request:
    """The requirements that matter, the others listed as ignored; conflicts refused."""
    request = Request(name=name, requirements={})
    for where, text in lines:
        if text.startswith("-"):
            request.ignored.append(f"{text} ({where}: an option, not a pin)")
            continue
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise StackError(f"{where}: {text!r} is not a requirement ({exc}); write NAME==VERSION"
                             ) from None
        key = canonicalize_name(req.name)
        if not matters(key):
            near = difflib.get_close_matches(key, MATTERS + LAYERS, n=1, cutoff=0.85)
            if near:
                raise StackError(f"{where}: {req.name!r} is not a package the cells know, but "
                                 f"close to {near[0]!r}; fix the spelling")
            request.ignored.append(f"{text} ({where})")
            continue
        if req.url:
            raise StackError(f"{where}: {text!r} installs from a URL; pin a release from the "
                             "registry instead (NAME==VERSION)")
        for spec in req.specifier:
            if spec.operator in ("==", "===") and "*" not in spec.version:
                try:
                    Version(spec.version)
                except InvalidVersion:
                    raise StackError(f"{where}: {spec.version!r} is not a version; write "
                                     f"{req.name}==X.Y.Z") from None
        if key in request.requirements:
            merged = SpecifierSet(str(request.requirements[key].specifier) + "," + str(
                req.specifier).strip(",")) if req.specifier else request.requirements[key].specifier
            exact = [s.version for s in merged if s.operator == "=="]
            if len(set(exact)) > 1:
                raise StackError(f"{where}: {req.name} is pinned twice, to "
                                 f"{' and '.join(sorted(set(exact)))}; keep one pin")
            req = Requirement(f"{req.name}{merged}")
        request.requirements[key] = req
    return request


def from_args(pins: list[str], file: str | None) -> Request:
    if file and pins:
        raise StackError("give either -r FILE or NAME==VERSION pins, not both; "
                         "put the pins in the file")
    if file:
        return parse(read_requirements(Path(file)), stack_name(Path(file).stem))
    if not pins:
        raise StackError("no pins: pass -r FILE or NAME==VERSION ... "
                         "(e.g. Flask==1.1.4 gevent==20.9.0 gevent-websocket==0.10.1)")
    request = parse([(f"argument {i}", p) for i, p in enumerate(pins, 1)], "pins")
    # Named by its pins, so that two stacks given on the command line keep their results apart.
    named = "_".join(f"{n}-{request.exact(n)}" for n in sorted(request.requirements)
                     if request.exact(n))
    request.name = stack_name(named if 0 < len(named) <= 80 else "pins-" + hashlib.sha256(
        " ".join(pins).encode()).hexdigest()[:10])
    return request


def stack_name(name: str) -> str:
    """The user stack's name in records, labels and slugs: the file's stem (or the pins),
    in characters a slug and a file name keep; ``user-`` before a name pyproject.toml's
    [tool.stacks] already has (tests/data/stacks/today.txt is not the `today` stack)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "stack"
    return f"user-{name}" if name in STACKS else name
