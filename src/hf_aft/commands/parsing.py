"""One way to parse every subcommand: `HfArgumentParser` dataclasses, `--config FILE.yaml` for defaults (flags on
the command line override it, TRL's `trl sft` pattern), and one `hf-aft: error: ...` line for anything wrong: an
unknown flag (with the closest valid one), a bad value, a YAML key or value of the wrong kind, a number out of range.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import re
import sys

import yaml

from ..errors import AFTError, one_line
from ..option_checks import number_problem

HELP_ALL = "--help-all"


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written, and an option's default after its help, unless the option is required or its help
    gives the default in words; a `--no_X` flag says what it does, not X's help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        negated = next((o for o in action.option_strings if o.startswith("--no_")), None)
        if negated and action.const is False:
            return f"Turn {negated.removeprefix('--no_')} off (sets --{action.dest} false)."
        text = action.help or ""
        if action.required or "(required)" in text or "default" in text.lower():
            return text
        return super()._get_help_string(action)


class _Parser:
    """An `HfArgumentParser` whose errors are AFTErrors (one line, no usage dump, no SystemExit). `first`: the option
    a bare first argument fills (`hf-aft audit OUT`), shown as that argument; `metavars`: option dest -> the value's
    name in the help; `shown_as`: option dest -> the one flag the help and errors name (the others still parse)."""

    def __init__(self, dataclass_types, prog: str, description: str, first: str | None = None,
                 metavars: dict | None = None, shown_as: dict | None = None):
        from transformers import HfArgumentParser

        self.parser = HfArgumentParser(dataclass_types, prog=prog, description=description, allow_abbrev=False,
                                       formatter_class=HelpFormatter)
        self.parser.add_argument("--config", help="YAML file of flag names and values: defaults for any flag above; "
                                 "flags on the command line override it.")
        self.parser.error = self._error
        self.first = first
        for action in self.parser._actions:
            action.metavar = (metavars or {}).get(action.dest, action.metavar)
            if action.dest in (shown_as or {}):
                action.option_strings = [shown_as[action.dest]]  # parsing reads _option_string_actions

    def help(self) -> str:
        """The help, a `first` option shown as the bare argument it also is: `RUN` in the usage, `RUN, --run RUN`."""
        text = self.parser.format_help()
        if self.first:
            name = self.first.upper()
            usage, rest = text.split("\n\n", 1)
            listed = re.sub(rf"  --{self.first} {name}( *)", lambda m: f"  {name}, --{self.first} {name}" + " " * (
                max(len(m.group(1)) - len(name) - 2, 2) if m.group(1) else 0), rest, count=1)  # help stays aligned
            text = usage.replace(f"--{self.first} {name}", name, 1) + "\n\n" + listed
        return text

    def _error(self, message: str):
        if self.first and "arguments are required" in message:  # the argument the docs give first, without flag
            name = self.first.upper()
            message = re.sub(rf"--{self.first}(/--[\w-]+)*(?![\w-])", f"{name} (first, or --{self.first} {name})",
                             message, count=1)
        # "argument --transfer: invalid choice: 'x' (choose from 'a', 'b')" reads as the Python API's message
        choice = re.match(r"argument --(\w+).*: invalid choice: (.+) \(choose from (.+)\)$", message)
        if choice:
            name, value, options = choice.groups()
            raise AFTError(f"unknown {name} {value}: choose one of {options.replace(chr(39), '')}.")
        missing = re.match(r"argument (--\w+).*: expected one argument$", message)
        if missing:  # argparse reads "-inf" or "-x" after a flag as another flag, not its value
            raise AFTError(f"{message}: give {missing.group(1)} a value (one that starts with '-' is read as a flag: "
                           f"write {missing.group(1)}=VALUE).")
        raise AFTError(message.replace("\n", " "))

    def flags(self) -> dict[str, argparse.Action]:
        return dict(self.parser._option_string_actions)

    def closest(self, flag: str) -> str:
        match = difflib.get_close_matches(flag, list(self.flags()), n=1, cutoff=0.6)
        return f" (did you mean {match[0]}?)" if match else ""


def _yaml_tokens(path: str, parser: _Parser) -> list[str]:
    """A YAML mapping of flag names to values, as the command-line tokens that say the same."""
    try:
        with open(path) as f:
            values = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as error:
        raise AFTError(f"could not read config {path!r}: {one_line(error)}") from error
    if not isinstance(values, dict):
        raise AFTError(f"config {path!r} must be a YAML mapping of flag names to values.")
    flags, tokens = parser.flags(), []
    for key, value in values.items():
        action = flags.get(f"--{key}")
        if action is None or key == "config":
            raise AFTError(f"config {path!r} has an unknown key {key!r}{parser.closest(f'--{key}')}: use the flag "
                           "names of this command.")
        tokens += _tokens_of(key, value, action, path)
    return tokens


def _tokens_of(key: str, value, action: argparse.Action, path: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, dict):
        raise AFTError(f"config {path!r}: key {key!r} holds a mapping; give a single value.")
    if isinstance(value, list):
        if action.nargs not in ("+", "*"):
            raise AFTError(f"config {path!r}: key {key!r} takes one value, not a list ({value}).")
        _check_list_values(key, value, action, path)
        return [f"--{key}", *map(str, value)] if value else []
    if action.nargs in ("+", "*"):
        _check_list_values(key, [value], action, path)
    if isinstance(value, bool):
        value = str(value).lower()
    return [f"--{key}", *([str(value)] if action.nargs != 0 else [])]


def _check_flags_known(tokens: list[str], parser: _Parser, prog: str) -> None:
    """A misspelled flag is named (with the closest valid one) before anything else is said about the arguments."""
    flags = parser.flags()
    for token in tokens:
        flag = token.split("=")[0]
        if flag.startswith("--") and flag not in flags:
            raise AFTError(f"unrecognized argument {flag!r}{parser.closest(flag)}; see {prog} --help.")


def _check_list_values(key: str, values: list, action: argparse.Action, path: str) -> None:
    """The values of a list flag of names (--teachers, --lora_target_modules, ...) are strings, not numbers, lists or
    mappings (`teachers: 5` would otherwise become a teacher called '5')."""
    if action.type not in (None, str):
        return
    wrong = next((v for v in values if not isinstance(v, str)), None)
    if wrong is not None:
        raise AFTError(f"config {path!r}: key {key!r} takes a list of names (strings), not {wrong!r}; e.g. "
                       f"{key}: [name1, name2].")


def _check_lists_given_once(tokens: list[str], parser: _Parser) -> None:
    """A flag that takes several values (`--teachers A B`) given twice would keep only its last values."""
    seen = set()
    for token in tokens:
        flag = token.split("=")[0]
        action = parser.flags().get(flag)
        if action is not None and action.nargs in ("+", "*"):
            if flag in seen:
                raise AFTError(f"{flag} is given twice, and only its last values would be kept: name them all after "
                               f"one {flag} (e.g. {flag} A B).")
            seen.add(flag)


def check_numbers(*parsed) -> None:
    """Every float is finite; counts, sizes and rates have a sensible sign; fractions in [0, 1) or (0, 1)
    (`option_checks.number_problem`)."""
    for options in parsed:
        for f in dataclasses.fields(options):
            problem = number_problem(f.name, getattr(options, f.name))
            if problem:
                raise AFTError(f"--{f.name} {problem}.")


def split_config(argv: list[str]) -> tuple[str | None, list[str]]:
    """(the `--config FILE.yaml` given, if any; the other tokens)."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config")
    known, rest = pre.parse_known_args(argv)
    return known.config, rest


def parse(dataclass_types, argv: list[str], prog: str, description: str, required: tuple[str, ...] = (),
          rewrite=None, short_help=None, first: str | None = None, metavars: dict | None = None,
          shown_as: dict | None = None) -> tuple:
    """The dataclasses of `dataclass_types` from `argv` (with `--config` defaults). `rewrite` maps the combined
    tokens before parsing (e.g. `--beta auto`); `short_help(parser)` prints the help of `--help` (default: the full
    help, which `--help-all` always prints); `first`, `metavars`, `shown_as` as for `_Parser`: a bare first argument
    is the `first` option's value."""
    if first and argv and not argv[0].startswith("-"):
        argv = [f"--{first}", *argv]
    parser = _Parser(dataclass_types, prog, description, first, metavars, shown_as)
    if HELP_ALL in argv or (short_help is None and {"-h", "--help"} & set(argv)):
        print(parser.help())
        raise SystemExit(0)
    if {"-h", "--help"} & set(argv):
        short_help(parser.parser)
        raise SystemExit(0)
    config, rest = split_config(argv)
    _check_lists_given_once(rest, parser)
    tokens = (_yaml_tokens(config, parser) if config else []) + rest
    tokens = rewrite(tokens) if rewrite else tokens
    _check_flags_known(tokens, parser, prog)
    try:
        *outputs, remaining = parser.parser.parse_args_into_dataclasses(tokens, return_remaining_strings=True)
    except AFTError as error:  # the dataclasses' own checks name the Python field: the command names its flag
        word = str(error).split(" ", 1)[0]
        if f"--{word}" in parser.parser._option_string_actions:
            raise AFTError(f"--{error}") from error
        raise
    except ValueError as error:  # TrainingArguments' own checks of flag combinations
        raise AFTError(one_line(error)) from error
    if remaining:
        flag = next((t for t in remaining if t.startswith("-")), remaining[0])
        raise AFTError(f"unrecognized argument {flag!r}{parser.closest(flag.split('=')[0])}; see {prog} --help.")
    parsed = [output for output in outputs if dataclasses.is_dataclass(output)]  # not the --config namespace
    given = {t.split("=")[0][2:] for t in tokens if t.startswith("--")}
    missing = [f"--{key}" for key in required if key not in given]
    if missing:
        raise AFTError(f"{', '.join(missing)} required (on the command line or in --config).")
    check_numbers(*parsed)
    check_not_empty(given, *parsed)
    return tuple(parsed)


def check_not_empty(given: set[str], *parsed) -> None:
    """A flag given an empty value (`--unlabeled_dataset "$POOL"` with POOL unset) would act as if it were not
    given: refused, unless the empty string is the option's own default."""
    for options in parsed:
        for f in dataclasses.fields(options):
            value = getattr(options, f.name)
            empty = (isinstance(value, str) and not value.strip()) or (
                isinstance(value, list) and any(isinstance(v, str) and not v.strip() for v in value))
            if empty and f.name in given and f.default != "":
                raise AFTError(f"--{f.name} is empty (an unset shell variable in quotes?): give it a value, or drop "
                               f"--{f.name}.")


def check_new_output(path: str, what: str = "--output_file") -> None:
    """A file hf-aft is about to write does not exist yet (nothing already written is replaced silently)."""
    if os.path.exists(path):
        raise AFTError(f"{what} {path!r} already exists: choose another name or remove it first.")


def write_new_file(path: str, text: str) -> None:
    """Write `path`, which must not exist: written to a temporary name, then hard-linked into place, which fails
    rather than replace a file that appeared meanwhile (nothing already written is overwritten)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.link(tmp, path)
    except FileExistsError as error:
        raise AFTError(f"{path!r} appeared while this command ran: kept as it is; run again with another name."
                       ) from error
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def print_lines(*lines: str, file=sys.stdout) -> None:
    print("\n".join(lines), file=file)
