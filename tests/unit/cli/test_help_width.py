"""Every command's and group's `--help` fits 80 columns with nothing cut: no line wider, no
word ellipsized by rich, every option's help text, default and environment variable whole.

The commands are found by walking the click tree typer builds, so a new command is checked
without being listed here."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator

import pytest
import typer
import typer.rich_utils
from rich.cells import cell_len
from typer import _click as click  # typer vendors its click
from typer.core import TyperGroup
from typer.testing import CliRunner

from cli.main import app

WIDTH = 80
_BOX = re.compile(r"[│╭╮╰╯─]")


def _walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, TyperGroup):
        for name in sorted(command.commands):
            yield from _walk(command.commands[name], (*path, name))


COMMANDS = list(_walk(typer.main.get_command(app)))


def _words(text: str) -> list[str]:
    """Text as the sequence of its words: rich wraps and indents them, panels frame them."""
    return _BOX.sub(" ", text).split()


def _shown_whole(text: str, page: list[str]) -> bool:
    """Whether the words of `text` appear on the page in order, each whole. Words of other
    columns may come between them (an option's range wraps beside its help), but not many."""
    wanted = _words(text)
    for start in (i for i, word in enumerate(page) if word == wanted[0]):
        at, found = start, 1
        while found < len(wanted) and at + 1 < len(page) and at - start < 3 * len(wanted) + 10:
            at += 1
            found += page[at] == wanted[found]
        if found == len(wanted):
            return True
    return False


def _extras(param: click.Parameter, ctx: click.Context) -> dict[str, str]:
    """What click appends to a parameter's help in brackets: default, env var, range."""
    record = param.get_help_record(ctx)
    found = re.search(r"\[([^\[]*)\]$", record[1]) if record else None
    return dict(item.split(": ", 1) for item in found.group(1).split("; ") if ": " in item) if found else {}


def _expected(command: click.Command, ctx: click.Context) -> list[str]:
    """Every text the help page must show whole."""
    texts = [paragraph for paragraph in inspect.cleandoc(command.help or "").split("\n\n") if paragraph]
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        texts.append(getattr(param, "help", None) or "")
        extras = _extras(param, ctx)
        if "default" in extras:
            texts.append(f"[default: {extras['default']}]")
        if "env var" in extras:
            texts.append(f"[env var: {extras['env var']}]")
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            first = inspect.cleandoc(sub.help or "").split("\n\n")[0]
            texts.append(first)
    return [t for t in texts if t]


@pytest.fixture(autouse=True)
def _eighty_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    # typer's rich console takes TERMINAL_WIDTH once at import, rich reads COLUMNS per console
    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", WIDTH)
    monkeypatch.setenv("COLUMNS", str(WIDTH))


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "backbone" for p, _ in COMMANDS])
def test_help_fits_80_columns_with_nothing_cut(path: tuple[str, ...], command: click.Command) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(WIDTH)})
    assert result.exit_code == 0, result.output
    page = result.stdout
    wide = [line for line in page.splitlines() if cell_len(line) > WIDTH]
    assert not wide, "wider than 80 columns:\n" + "\n".join(wide)
    ctx = click.Context(command, info_name=path[-1] if path else "backbone")
    expected = _expected(command, ctx)
    assert page.count("…") <= sum(t.count("…") for t in expected), "rich cut a word:\n" + page
    shown = _words(page)
    missing = [t for t in expected if not _shown_whole(t, shown)]
    assert not missing, f"not shown whole: {missing}\n{page}"
