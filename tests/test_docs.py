"""The docs stay true to the code: README.md and docs/*.md are checked against the command line,
the Python API and the repository's files.

- every `anomalyforge <command>` shown in code (fenced blocks and inline spans) is a command whose
  `--help` works (in-process, `anomalyforge.cli.main`), and every `--option` shown with it exists;
- every `from anomalyforge... import ...` in a Python block imports;
- every `scripts/...` and `benchmarks/...` file a code block runs exists;
- every relative link (and `#anchor` into a page) points to something that exists;
- the README's test command is the one CI runs.
"""

from __future__ import annotations

import ast
import importlib
import re
import shlex
from pathlib import Path

import pytest

from anomalyforge import cli

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)
_INLINE = re.compile(r"`([^`\n]+)`")
_COMMAND = re.compile(r"(?<![\w.-])anomalyforge[ \t]+([a-z][a-z0-9-]*)")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_REPO_FILE = re.compile(r"(?<![\w./-])((?:scripts|benchmarks)/[\w./-]+\.(?:sh|py|md))")


def _rel(page: Path) -> str:
    return str(page.relative_to(REPO))


def _blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    return [(m.group(1).strip().lower(), m.group(2)) for m in _FENCE.finditer(text)]


def _prose(text: str) -> str:
    """The page without its fenced code blocks."""
    return _FENCE.sub("", text)


def _shell_lines(text: str) -> list[str]:
    """Shell-like code: non-Python fenced blocks (backslash continuations joined) and inline spans."""
    lines: list[str] = []
    for lang, body in _blocks(text):
        if lang in ("python", "py"):
            continue
        lines += body.replace("\\\n", " ").splitlines()
    lines += _INLINE.findall(_prose(text))
    return lines


def _shown_commands() -> list[tuple[str, str, str]]:
    """(page, command, the text after it up to the end of that shell command)."""
    found = []
    for page in PAGES:
        for line in _shell_lines(page.read_text(encoding="utf-8")):
            for m in _COMMAND.finditer(line):
                rest = re.split(r"\s#|&&|\|\||;|\|", line[m.end():])[0]
                found.append((_rel(page), m.group(1), rest))
    return found


COMMANDS = _shown_commands()


def _subparsers() -> dict:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return dict(action.choices)


def test_pages_show_commands():
    assert {p.name for p in PAGES} >= {"README.md", "user-guide.md", "methods.md", "protocol.md", "results.md"}
    shown = {c for _, c, _ in COMMANDS}
    assert shown >= {"info", "generate", "preview", "benchmark"}, shown
    # the user guide documents every command the CLI has
    guide = {c for p, c, _ in COMMANDS if p == "docs/user-guide.md"}
    assert set(_subparsers()) <= guide, f"undocumented in docs/user-guide.md: {sorted(set(_subparsers()) - guide)}"


@pytest.mark.parametrize("command", sorted({c for _, c, _ in COMMANDS}))
def test_shown_command_help_works(command, capsys):
    pages = sorted({p for p, c, _ in COMMANDS if c == command})
    assert command in _subparsers(), f"`anomalyforge {command}` shown in {pages} is not a command"
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    assert f"anomalyforge {command}" in capsys.readouterr().out


def test_shown_options_exist():
    subs = _subparsers()
    bad = []
    for page, command, rest in COMMANDS:
        if command not in subs:
            continue  # reported by test_shown_command_help_works
        known = set(subs[command]._option_string_actions)
        try:
            tokens = shlex.split(rest)
        except ValueError:
            tokens = rest.split()
        for tok in tokens:
            if tok.startswith("--"):
                opt = tok.split("=", 1)[0]
                if opt not in known:
                    bad.append(f"{page}: anomalyforge {command} {opt}")
    assert not bad, "options shown in the docs that the command does not take:\n" + "\n".join(bad)


def _python_imports() -> list[tuple[str, str, list[str]]]:
    found = []
    for page in PAGES:
        for lang, body in _blocks(page.read_text(encoding="utf-8")):
            if lang not in ("python", "py"):
                continue
            tree = ast.parse(body, filename=_rel(page))  # a Python block must at least parse
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "anomalyforge":
                    found.append((_rel(page), node.module, [a.name for a in node.names]))
                elif isinstance(node, ast.Import):
                    found += [(_rel(page), a.name, []) for a in node.names if a.name.split(".")[0] == "anomalyforge"]
    return found


def test_python_examples_import():
    imports = _python_imports()
    assert imports, "no Python example imports anomalyforge"
    bad = []
    for page, module, names in imports:
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            bad.append(f"{page}: import {module}: {exc}")
            continue
        bad += [f"{page}: from {module} import {n}" for n in names if not hasattr(mod, n)]
    assert not bad, "\n".join(bad)


def test_repository_files_in_code_exist():
    missing = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        code = [body for _, body in _blocks(text)] + _INLINE.findall(_prose(text))
        for chunk in code:
            missing += [f"{_rel(page)}: {f}" for f in _REPO_FILE.findall(chunk) if not (REPO / f).is_file()]
    assert not missing, "files named in code that do not exist:\n" + "\n".join(missing)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    prose = _prose(page.read_text(encoding="utf-8"))
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", prose, re.M)}


def test_relative_links_resolve():
    broken = []
    for page in PAGES:
        for target in _LINK.findall(_prose(page.read_text(encoding="utf-8"))):
            if _SCHEME.match(target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{_rel(page)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{_rel(page)}: {target} (no heading #{anchor})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_readme_test_command_is_what_ci_runs():
    blocks = [body.strip() for _, body in _blocks((REPO / "README.md").read_text(encoding="utf-8"))]
    assert "bash scripts/main.sh" in blocks and "bash scripts/test.sh" in blocks
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^\s*bash scripts/test\.sh\b", ci, re.M), ".ci/run does not run bash scripts/test.sh"
