"""The last step of a training run (`pipeline.train_student` calls `finish_run` once, on the main process, after the
student, its results and its card are saved): the recipe (recipe.yaml), the measured cost and benefit
(cost_report.json, unless `--skip_cost_report`), the audit record (audit.json), the card rendered again with their
summaries, and last the sha256 of every file in the output dir, into audit.json."""

from __future__ import annotations

import numpy as np

from .audit import card_summary, other_models, seal, teacher_record, utc_now, write_record
from .card import read_card_inputs, write_model_card
from .claims import stamped
from .cost import HEADLINE, cost_report, write_cost_report
from .cost import card_summary as cost_card_summary
from .features import FEATURES_COLUMN
from .group_report import finish_groups, summary_lines
from .provenance import device_name, library_versions, source_path, split_summary, student_revision, teacher_specs
from .recipe import RECIPE_HEADER, build_recipe, write_recipe
from .targets import TOKEN
from .teachers import display_names
from .word_features import is_word_features, word_matrix


def _recipe_header(summary: dict, record: dict) -> list[str]:
    processes = record["processes"]  # the global batch is per-device batch x processes: rerun on as many
    launch = (f"accelerate launch --multi_gpu --num_processes {processes} -m hf_aft train" if processes > 1 else
              "hf-aft train")  # without --multi_gpu (or a config file), accelerate launch starts one process
    lines = [f"{RECIPE_HEADER} {summary['output_dir']} ({record['started']}); rerun it with",
             f"  {launch} --config recipe.yaml --output_dir NEW_DIR"]
    if summary.get("beta_note"):  # where the recipe's beta came from (e.g. chosen by --beta auto)
        lines.append(f"this run's {summary['beta_note']}")
    if summary.get("schedule_note"):  # a resume with another --max_steps: the rerun is not the same run
        lines.append(f"this run was {summary['schedule_note']}")
    elif summary.get("resumed_from"):
        lines.append(f"this run resumed {summary['resumed_from']['checkpoint']} (step "
                     f"{summary['resumed_from']['step']}), with the options above")
    continued = (summary.get("beta_search") or {}).get("budget", {}).get("continued_steps")
    if continued:  # the final run went on from the chosen candidate: a rerun starts from step 0 on every row
        lines.append(f"this run's final run continued the chosen --beta auto candidate from step {continued} (trained "
                     "until then without the held-out rows): a rerun of this recipe trains every step on every row, "
                     "another student of the same recipe")
    for split, facts in record["splits"].items():
        lines.append(f"{split} split: {facts['rows']} rows, fingerprint {facts['fingerprint']}")
    for teacher in record["teachers"]:
        lines.append(f"teacher {teacher['name']}: revision {teacher['resolved_revision']}")
    for model in record["other_models"]:  # a local one is named by path in the recipe: its content hash is here
        lines.append(f"{model['role'].replace('_', ' ')} {model['spec']}: revision {model['resolved_revision']}")
    return lines


def audit_record(trainer, script_args, config, run: dict, summary: dict) -> dict:
    """The audit record of a finished run, without the file hashes (see `audit.seal`)."""
    splits, input_column = run["splits"], script_args.image_column or script_args.text_column
    specs, terms = teacher_specs(config.teachers, trainer.teacher_infos), trainer.terms_summary()
    return stamped({
        "audit_version": 1, "versions": library_versions(), "device": device_name(trainer.args.world_size),
        "processes": trainer.args.world_size,
        "started": run["started"], "ended": utc_now(), "output_dir": summary["output_dir"],
        "resumed_from": summary.get("resumed_from"),
        "dataset": {"name": script_args.dataset_name, "path": source_path(script_args.dataset_name),
                    "config": script_args.dataset_config,
                    "train_split": script_args.train_split, "eval_split": script_args.eval_split,
                    "text_column": script_args.text_column, "image_column": script_args.image_column,
                    "label_column": script_args.label_column,
                    "unlabeled_dataset": getattr(script_args, "unlabeled_dataset", None),
                    "unlabeled_split": getattr(script_args, "unlabeled_split", None),
                    "unlabeled_path": source_path(getattr(script_args, "unlabeled_dataset", None))},
        "splits": {name: split_summary(split, splits.labels.column, input_column, splits.labels)
                   for name, split in (("train", splits.train), ("eval", splits.eval),
                                       ("unlabeled", run.get("unlabeled_raw"))) if split is not None},
        "terms": terms,
        "teachers": [teacher_record(spec, info) for spec, info in zip(specs, trainer.teacher_infos, strict=True)],
        "other_models": other_models(terms),
        "feature_cache_fingerprint": run.get("features_fingerprint"),
        "student": {"init": script_args.model_name_or_path, "path": source_path(script_args.model_name_or_path),
                    "revision": student_revision(script_args.model_name_or_path)},
        "transfer": config.transfer, "beta": config.beta, "seed": config.seed,
        "metrics": {"train": summary.get("train"), "eval": summary.get("eval")},
    })


def _probe_labels(labels, splits, train_set, eval_set, has_features: bool) -> dict:
    """The probes' targets: the trained rows' labels; for token classification the classes per word (the probe is
    per word: [all words] for training, per eval row a list), not the student's per-token ones."""
    if labels.problem_type == TOKEN:
        return {"train_labels": np.concatenate(labels.class_ids(splits.train)) if has_features else None,
                "eval_labels": labels.class_ids(splits.eval, "eval") if splits.eval is not None else None}
    return {"train_labels": np.asarray(train_set["labels"]) if has_features else None,
            "eval_labels": np.asarray(eval_set["labels"]) if eval_set is not None else None}


def _targets_probe_c(trainer, train_set) -> float | None:
    """The C the distillation targets' probe chose on these rows' features, for the cost report's probe to reuse
    (the same search on the same rows); None where its features differ: several teachers (the report probes each
    alone) or other rows."""
    rows = getattr(trainer, "rows", None)
    if rows is None or len(trainer.teacher_infos) != 1 or rows.n_labeled != len(train_set):
        return None
    return rows.probe_c


def _cost(trainer, script_args, config, run: dict, summary: dict) -> dict:
    train_set, eval_set = run["train_set"], run["eval_set"]
    features, labels = None, run["splits"].labels
    if trainer.teacher_infos and FEATURES_COLUMN in train_set.column_names:
        features = (word_matrix(train_set)[0] if is_word_features(train_set) else
                    np.asarray(train_set.with_format("numpy")[FEATURES_COLUMN], dtype=np.float32))
    inputs = {
        "model": trainer.model, "processor": trainer.processing_class, "output_dir": config.output_dir,
        "config": config, "infos": trainer.teacher_infos, "train_raw": run["splits"].train,
        "eval_raw": run["splits"].eval, "train_features": features,
        **_probe_labels(labels, run["splits"], train_set, eval_set, features is not None),
        "text_column": script_args.text_column, "image_column": script_args.image_column,
        "max_length": script_args.max_length, "problem_type": run["splits"].labels.problem_type,
        "eval_score": (summary.get("eval") or {}).get("eval_" + HEADLINE[run["splits"].labels.problem_type]),
        "train_seconds": (summary.get("train") or {}).get("train_runtime"),
        "extraction_seconds": run.get("extraction_seconds"), "names": labels.names,
        "probe_c": _targets_probe_c(trainer, train_set)}
    report = cost_report(inputs)
    names = dict(zip((t["name"] for t in report["teachers"]), display_names([t["name"] for t in report["teachers"]]),
                     strict=True))
    run["probe_predictions"] = {names[n]: p for n, p in inputs.get("probe_predictions", {}).items()}
    return report


def finish_run(trainer, script_args, config, run: dict, summary: dict) -> dict:
    """Write recipe.yaml, cost_report.json, audit.json, render the card again with their summaries, then hash every
    file into audit.json. `run` holds: started (UTC), splits (`LabelledSplits`), peft_args, train_set and eval_set
    (as trained), output_dir, and features_fingerprint / extraction_seconds when teachers ran. Returns what it adds
    to the run's summary (recipe, audit and cost report paths, the cost summary lines)."""
    output_dir = config.output_dir
    added = {"recipe": f"{output_dir}/recipe.yaml", "audit": f"{output_dir}/audit.json"}
    facts = read_card_inputs(output_dir) or {"transfer": config.transfer}
    if not getattr(script_args, "skip_cost_report", False):
        report = _cost(trainer, script_args, config, run, summary)
        write_cost_report(output_dir, report)
        facts["cost"] = cost_card_summary(report)
        added["cost_summary"] = report["summary"]
    groups = finish_groups(trainer, script_args, run, summary)  # the cost report's probes: inherited errors
    if groups is not None:
        facts["groups"] = groups
        if run.get("baseline_results"):  # the baseline's student ran on these rows: its own results may be others'
            facts["baseline_results"] = run["baseline_results"]
        added["group_lines"] = summary_lines(groups)
    record = audit_record(trainer, script_args, config, {**run, "output_dir": output_dir}, summary)
    recipe = build_recipe(script_args, config, run.get("peft_args"), trainer.teacher_infos, trainer.rows.distill,
                          {m["role"]: m["resolved_revision"] for m in record["other_models"]})
    write_recipe(output_dir, recipe, _recipe_header(summary, record))
    write_record(output_dir, record)
    facts["audit"] = card_summary(seal(output_dir))  # the weights' hashes, known before the card
    write_model_card(output_dir, **facts)
    seal(output_dir)  # last: every file, the card included
    return added
