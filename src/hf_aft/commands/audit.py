"""`hf-aft audit RUN`: print a run's lineage from its audit.json and check its files against the recorded sha256."""

from __future__ import annotations

from dataclasses import dataclass, field

from .parsing import parse

DESCRIPTION = """Print the lineage of a training run (versions, device, data fingerprints, teachers (and a generator or
task teacher) and their revisions, metrics) from its audit.json, and check every file against the sha256 recorded
there. RUN is the run's output dir or its Hub model id (the repo is downloaded; only the files a push uploads are
compared).

  hf-aft audit OUT [--group_column COLUMN ...]

The per-group results the run recorded (--group_column at training) are printed with the lineage; --group_column here
evaluates the student again on its evaluation split, per group of any column of that split.

Exit status: 0 when every file is unchanged, 1 when a file changed, is missing or was added (one line each), 2 for
bad input."""


@dataclass
class AuditArguments:
    run: str = field(metadata={"help": "The output dir of an hf-aft train run, or its Hub model id."})
    group_column: list[str] | None = field(
        default=None, metadata={"help": "Also evaluate the student on its evaluation split per group of these columns "
                                "(any column of that split) and print the per-group results."}
    )
    group_min_rows: int = field(
        default=30, metadata={"help": "Groups with fewer eval rows are pooled into 'other'."}
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "With --group_column: the dataset to evaluate on (the recipe's path moved)."}
    )


def run(argv: list[str]) -> None:
    import time

    from ..audit import lineage_lines, read_record, verify
    from ..evaluation import run_folder

    (args,) = parse((AuditArguments,), argv, "hf-aft audit", DESCRIPTION, first="run")
    folder, hub_copy = run_folder(args.run)
    record = read_record(folder)
    group_lines = []
    if args.group_column:  # first: a bad group option is refused before anything is printed
        from ..group_report import finished_run_groups, summary_lines, table_lines

        report = finished_run_groups(folder, args.group_column, args.group_min_rows, args.dataset_name)
        group_lines = ["the student per group of its evaluation split (no baseline):", *table_lines(report),
                       *summary_lines(report)]
    _print(*lineage_lines(record))
    start = time.perf_counter()
    problems = verify(folder, record, hub_copy)
    seconds = time.perf_counter() - start
    if group_lines:
        _print(*group_lines)
    checked = len(record.get("files") or {})
    if problems:
        _print(*problems, f"audit: {len(problems)} file(s) differ from audit.json ({checked} recorded, "
                    f"checked in {seconds:.2f} s)")
        raise SystemExit(1)
    print(f"audit: all {checked} recorded files unchanged (checked in {seconds:.2f} s)")


def _print(*lines: str) -> None:
    print("\n".join(lines))  # sys.stdout as it is now (tests capture it)
