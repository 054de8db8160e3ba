"""The deployment package of the `api` service, built offline the way the pinned azd builds it, and what it holds.

azd (the version .github/workflows/ci.yml pins; ``AZD_VERSION`` here must name the same one) packages a Python
function app for Flex Consumption (remote build: the platform installs requirements.txt) by zipping the service
folder, ``project: .`` in azure.yaml. What it leaves out is decided in azd's ``createDeployableZip``
(cli/azd/pkg/project/project_utils.go) and the gitignore matcher it uses (github.com/denormal/go-gitignore at
ae8ad1d07817):

* the folders are walked in name order, symbolic links followed; only files are stored, directories are not;
* a directory named ``.azure``, a file named ``.funcignore`` and, for a function app, any file named
  ``local.settings.json`` are always left out;
* when ``.funcignore`` exists (a UTF-8 byte order mark is dropped first), every entry is matched against its
  patterns, the last matching pattern deciding, and an ignored directory is not entered. Patterns without a slash
  match the entry's name at any depth; an anchored one (``/name``) and one with an inner slash match the path from
  the root; ``*`` in a name pattern matches any character, ``/`` included; a trailing ``/`` matches directories
  only; ``!`` re-includes;
* without ``.funcignore``, only virtual environments (a folder holding ``pyvenv.cfg``) and ``__pycache__`` are
  left out.

``check`` then says whether the package is exactly the app: ``shared/``, the function folders (the top-level
folders holding a ``function.json``), ``host.json`` and ``requirements.txt``, every file under them except compiled
Python, and nothing else. ``--zip`` compares a package azd really built (CI runs ``azd package``) with this one.

Usage: python scripts/package_app.py [--root DIR] [--list] [--zip FILE]
Standard library only: CI runs it with a bare Python. Exits 1 and prints one line per problem.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

AZD_VERSION = "1.29.0"
IGNORE_FILE = ".funcignore"
APP_FILES = ("host.json", "requirements.txt")
APP_PACKAGE = "shared"
COMPILED = re.compile(r"(^|/)__pycache__/|\.py[co]$")


class UnsupportedPattern(ValueError):
    """A .funcignore line whose meaning this replica does not model; rewrite it in the supported subset."""


def _translate(glob: str, *, pathname: bool) -> str:
    """An fnmatch(3) pattern as a regular expression; with ``pathname``, wildcards never match a slash."""
    out: list[str] = []
    i = 0
    any_char = "[^/]" if pathname else "."
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out.append(any_char + "*")
        elif c == "?":
            out.append(any_char)
        elif c == "[":
            end = glob.find("]", i + 2 if glob[i + 1 : i + 2] in ("!", "^") else i + 1)
            if end < 0:
                raise UnsupportedPattern(f"unterminated bracket in {glob!r}")
            body = glob[i + 1 : end]
            if body[:1] in ("!", "^"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        elif c == "\\":
            raise UnsupportedPattern(f"escapes are not modelled: {glob!r}")
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


@dataclass(frozen=True)
class Pattern:
    """One .funcignore line, matched as denormal/go-gitignore matches it."""

    text: str
    negated: bool
    directory: bool
    kind: str  # "name" (no inner slash), "path" (an inner slash) or "any" (holds **)
    anchored: bool
    regex: re.Pattern[str] | None
    parts: tuple[str, ...] = ()

    @classmethod
    def parse(cls, line: str) -> Pattern | None:
        text = line.rstrip()
        if not text or text.startswith("#"):
            return None
        if text != text.lstrip():
            raise UnsupportedPattern(f"leading whitespace is not modelled: {line!r}")
        body = text
        negated = body.startswith("!")
        body = body[1:] if negated else body
        anchored = body.startswith("/")
        body = body[1:] if anchored else body
        directory = body.endswith("/")
        body = body[:-1] if directory else body
        if not body:
            raise UnsupportedPattern(f"empty pattern: {line!r}")
        if "**" in body:
            parts = tuple(p for p in body.split("/") if p)
            return cls(text, negated, directory, "any", anchored, None, parts)
        if "/" in body:
            return cls(text, negated, directory, "path", anchored, re.compile(_translate(body, pathname=True)))
        return cls(text, negated, directory, "name", anchored, re.compile(_translate(body, pathname=False)))

    def matches(self, rel: str, is_dir: bool) -> bool:
        if self.directory and not is_dir:
            return False
        if self.kind == "name":
            subject = rel if self.anchored else rel.rsplit("/", 1)[-1]
            return self.regex is not None and self.regex.fullmatch(subject) is not None
        if self.kind == "path":
            return self.regex is not None and self.regex.fullmatch(rel) is not None
        return _match_any(rel.split("/"), self.parts)


def _match_any(path: list[str], parts: tuple[str, ...]) -> bool:
    if not parts:
        return not path
    if parts[0] == "**":
        return _match_any(path, parts[1:]) or (bool(path) and _match_any(path[1:], parts))
    if path and re.fullmatch(_translate(parts[0], pathname=True), path[0]):
        return _match_any(path[1:], parts[1:])
    return False


def read_ignore(root: Path) -> list[Pattern] | None:
    """The patterns of ``root/.funcignore``, or None when there is none."""
    path = root / IGNORE_FILE
    if not path.is_file():
        return None
    text = path.read_bytes().removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    return [p for p in (Pattern.parse(line) for line in text.splitlines()) if p is not None]


def _ignored(patterns: list[Pattern], rel: str, is_dir: bool) -> bool:
    for pattern in reversed(patterns):
        if pattern.matches(rel, is_dir):
            return not pattern.negated
    return False


def package_files(root: Path) -> list[str]:
    """The files azd's zip of ``root`` holds, as slash-separated paths relative to it, in azd's order."""
    patterns = read_ignore(root)
    found: list[str] = []

    def walk(directory: Path, prefix: str, depth: int) -> None:
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            rel = prefix + entry.name
            is_dir = entry.is_dir(follow_symlinks=True)
            if entry.name == ".azure" and is_dir:
                continue
            if entry.name == IGNORE_FILE and not is_dir:
                continue
            if entry.name == "local.settings.json" and not is_dir:
                continue
            if patterns is not None:
                if _ignored(patterns, rel, is_dir):
                    continue
            elif is_dir and ((Path(entry.path) / "pyvenv.cfg").exists() or entry.name.lower() == "__pycache__"):
                continue
            if is_dir:
                if depth < 40:  # azd stops following symbolic links this deep, as zip(1) does
                    walk(Path(entry.path), rel + "/", depth + 1)
            else:
                found.append(rel)

    walk(root, "", 0)
    return found


def function_folders(root: Path) -> list[str]:
    """The top-level folders holding a function.json: the v1 functions the host loads."""
    return sorted(p.parent.name for p in root.glob("*/function.json") if not p.parent.name.startswith("."))


def app_roots(root: Path) -> list[str]:
    """What the package must consist of: shared/, the function folders, host.json, requirements.txt."""
    return [APP_PACKAGE, *function_folders(root), *APP_FILES]


def _files_under(root: Path, top: str) -> Iterator[str]:
    path = root / top
    if path.is_file():
        yield top
        return
    for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        for name in sorted(filenames):
            rel = f"{rel_dir}/{name}"
            if not COMPILED.search(rel) and name != "local.settings.json":
                yield rel


def check(root: Path) -> list[str]:
    """Problems with the package of ``root``: anything outside the app in it, anything of the app missing."""
    try:
        files = package_files(root)
    except UnsupportedPattern as exc:
        return [f"{IGNORE_FILE}: {exc}"]
    roots = app_roots(root)
    problems = [f"{top} is missing from the project" for top in roots if not (root / top).exists()]
    outside = sorted({f.split("/", 1)[0] for f in files} - set(roots))
    for top in outside:
        kind = "folder" if (root / top).is_dir() else "file"
        problems.append(f"the package holds the {kind} {top}, which is not part of the app: add it to {IGNORE_FILE}")
    for junk in sorted(f for f in files if COMPILED.search(f)):
        problems.append(f"the package holds compiled Python {junk}: {IGNORE_FILE} must leave out __pycache__/, *.pyc")
    packaged = set(files)
    for top in roots:
        for rel in _files_under(root, top):
            if rel not in packaged:
                problems.append(f"the package misses {rel}, part of the app: {IGNORE_FILE} leaves it out")
    return problems


def check_pinned_azd(root: Path) -> list[str]:
    """The workflow pins the azd whose packaging this replica models."""
    workflow = root / ".github" / "workflows" / "ci.yml"
    if not workflow.exists():
        return []
    pinned = re.findall(r"AZD_VERSION:\s*\"?([0-9][0-9.]*)\"?", workflow.read_text(encoding="utf-8"))
    if pinned != [AZD_VERSION]:
        return [
            f"{workflow.relative_to(root)} pins azd {pinned or 'nowhere'} but scripts/package_app.py models azd "
            f"{AZD_VERSION}: read createDeployableZip of the new version and update both"
        ]
    return []


def compare_zip(root: Path, archive: Path) -> list[str]:
    """Differences between the package azd built (``archive``) and the one rebuilt here."""
    with zipfile.ZipFile(archive) as zipped:
        real = {name for name in zipped.namelist() if not name.endswith("/")}
    rebuilt = set(package_files(root))
    problems = [f"azd packaged {name}, which the offline replica leaves out" for name in sorted(real - rebuilt)]
    problems += [f"the offline replica packages {name}, which azd left out" for name in sorted(rebuilt - real)]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--list", action="store_true", help="print the files the package holds")
    parser.add_argument("--zip", type=Path, help="a package azd built: it must hold exactly the rebuilt files")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    if args.list:
        print("\n".join(package_files(root)))
    problems = check(root) + check_pinned_azd(root)
    if args.zip:
        problems += compare_zip(root, args.zip)
    for line in problems:
        print(f"package: {line}")
    count = len(package_files(root)) if not any(p.startswith(IGNORE_FILE) for p in problems) else 0
    print(f"package: {count} file(s) as azd {AZD_VERSION} would zip them, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
