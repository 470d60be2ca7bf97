"""MkDocs hook: the CLI reference, generated at build time from the parsers `hf-aft` itself builds.

Each subcommand's `run(argv)` builds its parser through `hf_aft.commands.parsing.parse(dataclass_types, argv, prog,
description, ...)`. To get exactly what `hf-aft SUB --help-all` knows, the hook calls `run` with `parse` replaced by a
function that records its arguments and stops; it then builds the parser as `parse` does (`_Parser`, the same
`HfArgumentParser` with `--config`) and writes every argparse action: flags, type, choices, default and help. A new
dataclass field therefore appears on the page without anyone editing it.

A page opts in by holding the line `<!-- cli-reference -->`; the hook replaces it.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from pathlib import Path

MARKER = "<!-- cli-reference -->"
ROOT = Path(__file__).resolve().parents[2]


class _Captured(Exception):
    def __init__(self, dataclass_types, prog, description):
        super().__init__(prog)
        self.dataclass_types, self.prog, self.description = tuple(dataclass_types), prog, description


def command_parsers():
    """(name, one-line help, dataclass types, argparse parser) for every subcommand, in `hf-aft`'s order."""
    if str(ROOT / "src") not in sys.path:
        sys.path.insert(0, str(ROOT / "src"))
    from hf_aft.commands import COMMANDS, parsing

    def capture(dataclass_types, argv, prog, description, *args, **kwargs):
        raise _Captured(dataclass_types, prog, description)

    for name, (summary, module_name) in COMMANDS.items():
        module = importlib.import_module(f"hf_aft.commands.{module_name}")
        original = module.parse
        module.parse = capture
        try:
            module.run(["--help-all"])
        except _Captured as captured:
            parser = parsing._Parser(captured.dataclass_types, captured.prog, captured.description).parser
            yield name, summary, captured, parser
        else:
            raise RuntimeError(f"hf-aft {name}: run() did not build its parser through parsing.parse")
        finally:
            module.parse = original


def _owner(dest: str, dataclass_types) -> str:
    """The class that declares a field: `AFTConfig`, or the base it inherits the field from (`TrainingArguments`)."""
    for cls in dataclass_types:
        if dest in {f.name for f in dataclasses.fields(cls)}:
            for base in cls.__mro__:
                if dest in vars(base).get("__annotations__", {}):
                    return base.__name__
            return cls.__name__
    return "command"


def _cell(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _type(action: argparse.Action) -> str:
    if action.choices:
        return " \\| ".join(f"`{choice}`" for choice in action.choices)
    if action.nargs == 0:
        return "flag"
    kind = getattr(action.type, "__name__", None) or ("str" if action.type is None else str(action.type))
    if kind == "string_to_bool":
        kind = "bool"
    return f"list of {kind}" if action.nargs in ("+", "*") else kind


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    default = action.default
    if default is None or default is argparse.SUPPRESS or default == []:
        return "-"
    return f"`{_cell(getattr(default, 'value', default))}`"


def _help(action: argparse.Action) -> str:
    text = action.help or ""
    if "%(" in text:
        try:
            text = text % {**vars(action), "prog": ""}
        except (KeyError, TypeError, ValueError):
            pass
    return _cell(text.replace("%%", "%"))


def _rows(actions, dataclass_types):
    """One table per declaring class; `--x` and `--no_x` (one field) share a row."""
    tables: dict[str, dict[str, list]] = {}
    for action in actions:
        if isinstance(action, argparse._HelpAction) or not action.option_strings or action.help == argparse.SUPPRESS:
            continue  # --help itself, and what --help hides (--beta_auto: `--beta auto` sets it)
        owner = _owner(action.dest, dataclass_types)
        row = tables.setdefault(owner, {}).setdefault(action.dest, [[], action])
        row[0] += action.option_strings
    return tables


def _description(text: str) -> list[str]:
    """The parser's description as `--help` prints it: paragraphs as text, indented lines (examples) as code."""
    lines = []
    for paragraph in text.strip().split("\n\n"):
        rows = paragraph.splitlines()
        if all(row.startswith("  ") for row in rows):
            lines += ["```text", *(row.strip() for row in rows), "```", ""]
        else:
            lines += [" ".join(row.strip() for row in rows), ""]
    return lines


def command_markdown(name, summary, captured, parser) -> str:
    usage = parser.format_usage().strip()
    if len(usage.splitlines()) > 20:  # train: every Trainer flag; the tables below list them
        usage = f"usage: {captured.prog} [options]   (all of them below; hf-aft {name} --help-all)"
    lines = [f"## `hf-aft {name}`", "", f"{summary[0].upper()}{summary[1:]}.", "", "```text", usage, "```", "",
             *_description(captured.description)]
    owners = {cls.__name__: cls for types in [captured.dataclass_types] for cls in types}
    for owner, rows in _rows(parser._actions, captured.dataclass_types).items():
        cls = owners.get(owner)
        group = getattr(cls, "_argument_group_name", None)
        title = "Command options" if owner == "command" else f"From `{owner}`" + (f" ({group})" if group else "")
        if owner == "TrainingArguments":
            title += ": transformers' Trainer options (`hf-aft train --help-all`)"
        table = ["| option | type | default | help |", "|---|---|---|---|"]
        for flags, action in rows.values():
            names = "<br>".join(f"`{flag}`" for flag in flags)
            table.append(f"| {names} | {_type(action)} | {_default(action)} | {_help(action)} |")
        if owner == "TrainingArguments":  # long: folded
            lines += [f'??? note "{title} ({len(rows)} options)"', "", *("    " + t for t in table), ""]
        else:
            lines += [f"**{title}**", "", *table, ""]
    return "\n".join(lines)


def reference_markdown() -> str:
    return "\n".join(command_markdown(*parts) for parts in command_parsers())


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, reference_markdown())
