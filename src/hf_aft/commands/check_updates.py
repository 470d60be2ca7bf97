"""`hf-aft check-updates RUN [--retrain NEW_OUT]`: has a model a finished run was made from moved? Retrain if so."""

from __future__ import annotations

from dataclasses import dataclass, field

from .parsing import parse

DESCRIPTION = """Resolve each teacher of a finished run (and its --generator and --distill_teacher, when it had them)
again at the revision it was requested at (its branch or tag on the Hub, main when none was given; the content hash of
a local folder or GGUF file, at the absolute path recorded when it trained: every file that can change what it
computes), and the student's initialisation when it was a local folder, and print old -> new. A run recorded by an
earlier hf-aft, whose hash (local-<hex>, no v2-) read a local model's weights and main config and tokenizer files only,
is compared by that hash ("unchanged, by the earlier hf-aft's hash"), which cannot see an edit to its other files. RUN
is the run's output dir or its Hub model id.

  hf-aft check-updates OUT [--retrain NEW_OUT]

--retrain reruns the run's recipe with the new revisions into NEW_OUT (only the changed teachers' features are computed
again; a changed generator writes its texts again), evaluates the old and the new student on the same evaluation split
and writes NEW_OUT/update_report.json and a History section in the new card; with --group_column (or the run's own),
the new student against the old one group by group, one line per group where it is worse beyond the paired noise. The
old run is not modified. Data is not followed (with no model changed, --retrain trains nothing), but a retrain that
read other rows than the run did says so, in its report and card.
Exit status: 0 when nothing changed, 1 when a model did (after retraining, with --retrain), 2 for bad input."""


@dataclass
class CheckUpdatesArguments:
    run: str = field(metadata={"help": "The output dir of an hf-aft train run, or its Hub model id."})
    retrain: str | None = field(
        default=None, metadata={"help": "Rerun the recipe with the changed models into this new output dir."}
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "The run's dataset at another path (when the recipe's has moved): "
                                "--retrain trains and compares the students on it."}
    )
    group_column: list[str] | None = field(
        default=None, metadata={"help": "With --retrain, compare the students per group of these eval columns "
                                "(default: the run's own --group_column)."}
    )
    group_min_rows: int | None = field(
        default=None, metadata={"help": "Groups with fewer eval rows are pooled into 'other' (default: the run's, "
                                "else 30)."}
    )


def _print_report(report: dict) -> None:
    old, new = report["old"], report["new"]
    rows = "sentences" if report.get("agreement_of") == "words" else "examples"
    lines = [f"eval ({report['eval_rows']} {rows})   old      new"]
    lines += [f"{name.replace('_', '-').replace('f1', 'F1'):<25}{old[name]:.4f}   {new[name]:.4f}"
              for name in report["metrics"]]
    for name, recall in report.get("per_class_recall", {}).items():
        new_recall = "-" if recall["new"] is None else f"{recall['new']:.4f}"
        old_recall = "-" if recall["old"] is None else f"{recall['old']:.4f}"
        lines.append(f"recall {name[:17]:<17} {old_recall:<8} {new_recall}")
    if report["agreement"] is not None:
        unit = report.get("agreement_of", "examples")
        lines.append(f"agreement                {report['agreement']:.1%} of the {unit}")
    if "groups" in report:
        from ..group_report import summary_lines

        lines += [f"new student vs old, {line}" if line.startswith("groups by") else line
                  for line in summary_lines(report["groups"])]
    _print(*lines)


def run(argv: list[str]) -> None:
    import os

    from ..evaluation import eval_split
    from ..outputs import check_output_dir
    from ..reruns import data_differs
    from ..updates import check_updates, compare_students, group_options, load_run, record_update, retrain_argv
    from .train import train

    (args,) = parse((CheckUpdatesArguments,), argv, "hf-aft check-updates", DESCRIPTION, first="run")
    if args.retrain:
        check_output_dir(args.retrain, option="--retrain")
    folder, record = load_run(args.run)
    if args.retrain:  # the run's data and the comparison's group options are checked before anything is retrained
        split = eval_split(folder, args.dataset_name)[0]  # a refusal in this command's terms, not train's flags
        args.group_column, args.group_min_rows = group_options(folder, args.group_column, args.group_min_rows,
                                                               split=split)
    rows = check_updates(record)
    _print(*(f"{row['role'].replace('_', ' ')} {row['name']}: {row['old']} -> {row['new']}  ({_state(row)})"
             for row in rows))
    if not any(row["changed"] for row in rows):
        print("nothing changed")
        return
    if args.retrain:
        train(retrain_argv(folder, rows, args.retrain, args.dataset_name), check_recipe=False)  # the changes are meant
        comparison = compare_students(folder, args.retrain, args.dataset_name, args.group_column,
                                      args.group_min_rows)
        previous = os.path.abspath(args.run) if os.path.isdir(args.run) else args.run  # a Hub id as given
        data_changes = data_differs(folder, args.retrain, same_source=True)  # the run's data, wherever it is now
        _print(*data_changes)
        record_update(args.retrain, previous, record, rows, comparison, data_changes)
        _print_report(comparison)
        print(f"retrained into {args.retrain}; report in {os.path.join(args.retrain, 'update_report.json')}")
    else:
        print("retrain with the new revisions and compare the students: add --retrain NEW_OUT")
    raise SystemExit(1)


def _state(row: dict) -> str:
    state = "changed" if row["changed"] else "unchanged"
    # compared as the earlier hf-aft that recorded it hashed it: weights and main configs only (warned beside)
    return f"{state}, by the earlier hf-aft's hash" if row.get("earlier_hash") else state


def _print(*lines: str) -> None:
    print("\n".join(lines))  # sys.stdout as it is now (tests capture it)
