"""What the user asked for: the pins that decide a cell, from a requirements file as pip
and uv read it (continuations, comments, ``-r``/``-c`` includes, ``--hash``, environment
markers, extras) or from the command line; everything else listed as ignored, with why."""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..builds import PROJECT
from ..cells import HANDLERS, LAYER_BY_DISTRIBUTION, STACKS
from ._errors import StackError
from ._registry import PYTHONS, Registry

GWS = PROJECT  # the handler under test, by its registry name
# The pins that decide a cell: the server, the handler, the agent, Flask's own line,
# and the request layers (each served with its cells) with what they bring.
MATTERS = (
    "gevent",
    "greenlet",
    GWS,
    "flask",
    "werkzeug",
    "jinja2",
    "markupsafe",
    "itsdangerous",
    "click",
    "newrelic",
)
LAYERS = tuple(LAYER_BY_DISTRIBUTION)  # each sets up a layer of [tool.layers]
LAYER_PREFIXES = ("opentelemetry-",)  # what OpenTelemetry's instrumentations run on
# What `python -m app` imports; filled in when the file leaves it out.
SERVER_NEEDS = ("gevent", "flask", "newrelic")
LAST_GWS = STACKS["today"][GWS]["version"]  # the last release there is (2017)
# The websocket handlers a stack can be served by: gevent-websocket, or one of
# [tool.handlers] (gevent-ws, flask-sock) that today's handler sessions serve.
HANDLER_NAMES = (GWS, *HANDLERS)


def matters(name: str) -> bool:
    name = canonicalize_name(name)
    return (
        name in MATTERS
        or name in HANDLER_NAMES
        or name in LAYERS
        or name.startswith(LAYER_PREFIXES)
    )


def served_handler(names: Iterable[str]) -> str:
    """The handler that serves a stack whose pins name ``names``: gevent-websocket if they
    name it or no handler at all, else the first of [tool.handlers] they name."""
    named = {canonicalize_name(n) for n in names}
    return next((h for h in HANDLER_NAMES if h in named), GWS)


# pip's comment: a '#' at the start of a line or after whitespace, to the end of it.
COMMENT = re.compile(r"(^|\s+)#.*$")
# Options of a requirements file that say where or how to install, not what: the cells
# install the public registry's releases, as uv and pip choose their files.
WHY_IGNORED = {
    **dict.fromkeys(
        (
            "-i",
            "--index-url",
            "--extra-index-url",
            "--no-index",
            "-f",
            "--find-links",
            "--trusted-host",
        ),
        "an index option: the stack's releases come from the public registry",
    ),
    **dict.fromkeys(
        (
            "--no-binary",
            "--only-binary",
            "--prefer-binary",
            "--pre",
            "--use-feature",
            "--config-settings",
            "--global-option",
            "--install-option",
        ),
        "an install option: the environment takes the files uv and pip choose",
    ),
    "--require-hashes": "the hashes the file has are checked at install (the hashes line "
    "says which pins were)",
}
EDITABLE = (
    "an editable install (a local project or a VCS checkout), not a release on the "
    "registry: the cells cannot build it; pin the release it is based on if it matters"
)
# A name that is not on the registry and at least this close (difflib's ratio) to one
# the stack depends on is a misspelling: gevnet is 0.83 from gevent.
NEAR = 0.75


@dataclass(frozen=True)
class Line:
    """One logical line of a requirements file (or one pin argument)."""

    where: str  # file:line, or "argument N"
    text: str  # the requirement, or the option line
    options: tuple[str, ...] = ()  # the requirement's own options: --hash=sha256:...
    constraint: bool = False  # from a -c file: binds a package only if it is installed


def marker_environment(python: str, full: str | None = None) -> dict[str, str]:
    """What an environment marker sees on the server: CPython ``python`` (X.Y) on Linux
    x86_64; ``full`` the interpreter's X.Y.Z where it is known, else X.Y.0."""
    full = full or f"{python}.0"
    return {
        "implementation_name": "cpython",
        "implementation_version": full,
        "os_name": "posix",
        "platform_machine": "x86_64",
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": full,
        "python_version": python,
        "sys_platform": "linux2" if python == "2.7" else "linux",
        "extra": "",
    }


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """``(first line number, line)``, read as pip reads a file: a line ending in a
    backslash goes on with the next (a comment line ends it), then comments go."""
    parts: list[str] = []
    first = 0
    for number, raw in enumerate(text.splitlines(), 1):
        comment = COMMENT.match(raw) is not None
        if raw.endswith("\\") and not comment:
            first = first if parts else number
            parts.append(raw[:-1])
            continue
        line, start = (
            ("".join(parts) + (" " + raw if comment else raw), first) if parts else (raw, number)
        )
        parts = []
        line = COMMENT.sub("", line).strip()
        if line:
            yield start, line
    if parts and (line := COMMENT.sub("", "".join(parts)).strip()):
        yield first, line


def _option(line: str) -> tuple[str, str]:
    """``("-r", "base.txt")`` from ``-r base.txt``, ``-rbase.txt`` or ``--requirement=base.txt``."""
    m = re.match(r"^(--[\w-]+|-[A-Za-z])(?:\s*=\s*|\s+)?(.*)$", line)
    return (m[1], m[2].strip()) if m else (line, "")


def read_requirements(
    path: Path, constraint: bool = False, chain: tuple[Path, ...] = ()
) -> list[Line]:
    """The lines of a pip requirements file, ``-r`` and ``-c`` files (relative to the file
    naming them) read in place; a ``-r`` inside a ``-c`` file is constraints too, as in pip."""
    path = Path(path)
    if path.resolve() in chain:
        names = " -> ".join(p.name for p in (*chain, path))
        raise StackError(
            f"{names}: the files include each other (a -r/-c cycle); remove one of those includes"
        )
    if not path.is_file():
        by = f" (named by {chain[-1].name})" if chain else ""
        raise StackError(
            f"{path}{by}: no such file; fix the path (an include is relative to "
            "the file that names it)"
            if chain
            else f"{path}: no such file; pass the path of a requirements file (-r FILE)"
        )
    out = []
    for number, line in _logical_lines(path.read_text(encoding="utf-8", errors="replace")):
        where = f"{path.name}:{number}"
        if line.startswith("-"):
            option, value = _option(line)
            if option in ("-r", "--requirement", "-c", "--constraint") and value:
                out += read_requirements(
                    path.parent / value,
                    constraint or option in ("-c", "--constraint"),
                    (*chain, path.resolve()),
                )
            else:
                out.append(Line(where, line, constraint=constraint))
            continue
        # pip's split: the requirement ends where a token starting with "-" begins.
        tokens = line.split()
        cut = next((i for i, t in enumerate(tokens) if t.startswith("-")), len(tokens))
        options = " ".join(tokens[cut:])
        out.append(
            Line(
                where,
                " ".join(tokens[:cut]),
                tuple(re.findall(r"--[\w-]+(?:[=\s]+[^\s-][^\s]*)?", options)),
                constraint,
            )
        )
    return out


@dataclass
class Request:
    name: str  # the stack's name: the file's stem, or "command-line"
    requirements: dict[str, Requirement]  # canonical name -> requirement, those that matter
    ignored: list[str] = field(default_factory=list)
    # canonical name -> {version: sha256 digests} of every exact pin of the file, whether
    # it matters or not (the resolver may choose the same release): () for one without.
    hashes: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    # Requirements the cells do not depend on, not yet looked up (check_names): name -> text.
    others: dict[str, str] = field(default_factory=dict)
    # Lines whose environment marker depends on the Python: decided by for_python().
    conditional: list[Line] = field(default_factory=list)
    python: str | None = None  # the X.Y the markers were evaluated for

    def exact(self, name: str) -> str | None:
        """The version of an exact ``==`` pin of ``name`` (no wildcard), else None."""
        req = self.requirements.get(canonicalize_name(name))
        return _exact(req) if req else None

    def pinned(self) -> dict[str, str]:
        """{canonical name: version} of the exact pins."""
        return {n: v for n in self.requirements if (v := self.exact(n)) is not None}

    def handler(self) -> str:
        """The websocket handler that serves this stack (served_handler)."""
        return served_handler(self.requirements)

    def layers(self) -> list[str]:
        return [n for n in self.requirements if n in LAYERS or n.startswith(LAYER_PREFIXES)]

    def served_layers(self) -> dict[str, str]:
        """{layer of [tool.layers]: its distribution} of each layer the pins set up."""
        return {LAYER_BY_DISTRIBUTION[n]: n for n in self.requirements if n in LAYERS}

    def for_python(self, python: str, full: str | None = None) -> Request:
        """This request with the markers that depend on the Python evaluated for
        ``python`` (X.Y; ``full`` its X.Y.Z)."""
        done = replace(
            self,
            requirements=dict(self.requirements),
            ignored=list(self.ignored),
            hashes={n: dict(v) for n, v in self.hashes.items()},
            others=dict(self.others),
            conditional=[],
            python=python,
        )
        for line in sorted(self.conditional, key=lambda ln: ln.constraint):
            done.add(line, marker_environment(python, full))
        return done

    def add(self, line: Line, environment: dict[str, str] | None = None) -> None:
        """One line of the file: a requirement that matters, or one listed as ignored (or
        left for check_names) with the reason; conflicts refused."""
        where, text = line.where, line.text
        if text.startswith("-"):
            option = _option(text)[0]
            why = (
                EDITABLE
                if option in ("-e", "--editable")
                else WHY_IGNORED.get(option, "an option the stack's build does not use")
            )
            self.ignored.append(f"{text} ({where}): {why}")
            return
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise StackError(
                f"{where}: {text!r} is not a requirement ({exc}); write NAME==VERSION"
            ) from None
        if req.marker is not None:
            if environment is None:
                held = {req.marker.evaluate(marker_environment(p)) for p in PYTHONS}
                if len(held) > 1:  # decided once the Python is chosen
                    self.conditional.append(line)
                    return
                holds, on = held.pop(), "CPython on Linux, where the cells run"
            else:
                holds, on = (
                    req.marker.evaluate(environment),
                    (f"Python {environment['python_version']}, the stack's"),
                )
            if not holds:
                self.ignored.append(f"{text} ({where}): its marker is false for {on}")
                return
        key = canonicalize_name(req.name)
        version = _exact(req)
        if version is not None:
            self.hashes.setdefault(key, {})[version] = tuple(
                o.split("=", 1)[1].strip() if "=" in o else o.split()[1]
                for o in line.options
                if o.startswith("--hash")
            )
        rest = [o for o in line.options if not o.startswith("--hash")]
        if rest:
            self.ignored.append(
                f"{' '.join(rest)} ({where}): "
                + WHY_IGNORED.get(_option(rest[0])[0], "an option the stack's build does not use")
            )
        if not matters(key) or (
            line.constraint and key not in self.requirements and key not in MATTERS
        ):
            # A constraint binds only a package that is installed anyway: those of MATTERS
            # always are, a layer only when the file requires it.
            self.others.setdefault(key, f"{text} ({where}{', a constraint' * line.constraint})")
            return
        if req.url:
            raise StackError(
                f"{where}: {text!r} installs from a URL; pin a release from the "
                "registry instead (NAME==VERSION)"
            )
        for spec in req.specifier:
            if spec.operator in ("==", "===") and "*" not in spec.version:
                try:
                    Version(spec.version)
                except InvalidVersion:
                    raise StackError(
                        f"{where}: {spec.version!r} is not a version; write {req.name}==X.Y.Z"
                    ) from None
        if key in self.requirements:
            before = self.requirements[key]
            merged = SpecifierSet(f"{before.specifier},{req.specifier}".strip(","))
            exact = {s.version for s in merged if s.operator == "=="}
            if len(exact) > 1:
                raise StackError(
                    f"{where}: {req.name} is pinned twice, to "
                    f"{' and '.join(sorted(exact))}; keep one pin"
                )
            if exact and not merged.contains(pin := exact.pop(), prereleases=True):
                raise StackError(
                    f"{where}: {req.name} is pinned to {pin}, which another "
                    f"line excludes ({merged}); keep one of them"
                )
            extras = sorted(before.extras | req.extras)
            req = Requirement(f"{req.name}{'[' + ','.join(extras) + ']' if extras else ''}{merged}")
        elif req.marker is not None:
            req.marker = None  # evaluated above: the resolver gets the requirement alone
        self.requirements[key] = req


def _exact(req: Requirement) -> str | None:
    """The one release ``req`` admits (``==2.0.2``, or ``>=2,==2.0.2``), else None."""
    pins = {
        s.version for s in req.specifier if s.operator in ("==", "===") and "*" not in s.version
    }
    version = pins.pop() if len(pins) == 1 else None
    return version if version and req.specifier.contains(version, prereleases=True) else None


def parse(lines: list[Line], name: str) -> Request:
    """The requirements that matter; the others listed as ignored, or left for
    check_names; the markers that depend on the Python left for for_python."""
    request = Request(name=name, requirements={})
    for line in sorted(lines, key=lambda ln: ln.constraint):  # pip: constraints apply last
        request.add(line)
    return request


def check_names(request: Request, registry: Registry, everything: bool = True) -> None:
    """Look up the requirements the cells do not depend on: one that is not on the
    registry and is close to a package the stack depends on is a misspelling (an error);
    the others are listed as ignored with what the registry says.  ``everything=False``
    (--predict) looks up only the close ones: the others are listed unchecked."""
    known = MATTERS + HANDLER_NAMES + LAYERS
    near = {n: difflib.get_close_matches(n, known, n=1, cutoff=NEAR) for n in request.others}
    found = registry.exist([n for n in request.others if everything or near[n]])
    for name, text in request.others.items():
        close = near[name][0] if near[name] else None
        if found.get(name) is False and close:
            raise StackError(
                f"{text}: {name!r} is not on the registry; did you mean {close}? fix the spelling"
            )
        if found.get(name) is False:
            why = (
                "not on the registry (a private package from another index?); the cells "
                "install only the public registry's releases"
            )
        else:
            why = (
                "not a package the cells pin (the resolver fills in what the server needs)"
                + (f" (though close to {close}: check the spelling)" if close else "")
                + ("" if name in found else " (not looked up: --predict)")
            )
        request.ignored.append(f"{text}: {why}")
    request.others.clear()


def from_args(pins: list[str], file: str | None) -> Request:
    if file and pins:
        raise StackError(
            "give either -r FILE or NAME==VERSION pins, not both; put the pins in the file"
        )
    if file:
        return parse(read_requirements(Path(file)), stack_name(Path(file).stem))
    if not pins:
        raise StackError(
            "no pins: pass -r FILE or NAME==VERSION ... "
            "(e.g. Flask==1.1.4 gevent==20.9.0 gevent-websocket==0.10.1)"
        )
    request = parse([Line(f"argument {i}", p) for i, p in enumerate(pins, 1)], "pins")
    # Named by its pins, so that two stacks given on the command line keep their results apart.
    named = "_".join(
        f"{n}-{request.exact(n)}" for n in sorted(request.requirements) if request.exact(n)
    )
    request.name = stack_name(
        named
        if 0 < len(named) <= 80
        else "pins-" + hashlib.sha256(" ".join(pins).encode()).hexdigest()[:10]
    )
    return request


def stack_name(name: str) -> str:
    """The user stack's name in records, labels and slugs: the file's stem (or the pins),
    in characters a slug and a file name keep; ``user-`` before a name pyproject.toml's
    [tool.stacks] already has (tests/data/stacks/today.txt is not the `today` stack)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "stack"
    return f"user-{name}" if name in STACKS else name
