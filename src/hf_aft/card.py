"""The student's model card: rendered from the Jinja template `hf_aft.model_cards/aft_student.md` with
`huggingface_hub.ModelCard.from_template`. `CardFacts` holds what the card says; `render_model_card` is a pure
function of them; `write_model_card` is the side-effecting step around it: it draws the scale plot, keeps the facts
as JSON (`model_card.json`, so `hf-aft push` can render the card again for another repo id) and writes README.md."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from importlib import resources

import numpy as np
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .claims import current_run_id
from .config import DEFAULT_BETA
from .errors import AFTError
from .metrics import metric_name
from .outputs import CARD_INPUTS_NAME, SCALES_PLOT_NAME
from .provenance import library_versions
from .recipe import read_card_inputs  # updates, hub and run_records read it from here too
from .scales_plot import teacher_scales, write_scales_plot
from .student_peft import peft_settings
from .targets import is_token_model, model_problem_type, task_description

# The card's task -> (student class, preprocessor class, its variable name in the loading snippet).
TASK_CLASSES = {"text-classification": ("AutoModelForSequenceClassification", "AutoTokenizer", "tokenizer"),
                "token-classification": ("AutoModelForTokenClassification", "AutoTokenizer", "tokenizer"),
                "image-classification": ("AutoModelForImageClassification", "AutoImageProcessor", "image_processor")}
METHOD_NAMES = {"aft": "Adaptive Feature Transfer (AFT)", "kd": "knowledge distillation of features (KD)",
                "rkd": "relational knowledge distillation (RKD)", "none": "plain fine-tuning"}
CARD_NAME = "README.md"
EVAL_METRICS = ("accuracy", "macro_f1", "micro_f1", "subset_accuracy", "mse", "mae", "pearson", "spearman", "f1",
                "precision", "recall", "loss")
HYPERPARAMETERS = ("learning_rate", "scales_learning_rate", "per_device_train_batch_size", "num_train_epochs",
                   "max_steps", "seed", "weight_decay", "lr_scheduler_type", "teacher_max_length")


@dataclass
class CardFacts:
    """Everything a student's card says. Optional facts left out are left out of the card.

    `baseline_results` are the eval results of the plain fine-tuning (STL) run shown next to this model's;
    `scales_plot` is the path, relative to the card, of the scale distribution image (see `write_scales_plot`);
    `peft`: the adapter's settings (a PEFT student loads with peft); `beta_search`: what `--beta auto` tried and chose;
    `task`: `text-classification` or `image-classification` (the pipeline tag, and how the card says to load it);
    `balance_teachers`: whether the run used that option (not in the paper, so the card says so); `labels`: the class
    names in id order; `eval_split`: the evaluation split's name and row count."""

    transfer: str
    beta: float | None = None
    kernel: str = "linear"
    teachers: list[dict] = field(default_factory=list)
    scales: dict[str, dict[str, float]] = field(default_factory=dict)
    eval_results: dict[str, float] | None = None
    base_model: str | None = None
    dataset_name: str | None = None
    unlabeled_data: dict | None = None  # {"name": --unlabeled_dataset, "split": --unlabeled_split}
    repo_id: str | None = None
    hyperparameters: dict = field(default_factory=dict)
    versions: dict[str, str] | None = None
    baseline_results: dict[str, float] | None = None
    scales_plot: str | None = None
    peft: dict | None = None
    beta_search: dict | None = None
    task: str = "text-classification"
    balance_teachers: bool = False
    labels: list[str] | None = None
    eval_split: dict | None = None  # {"name": ..., "rows": ...}
    audit: dict | None = None  # audit.card_summary: link, times, device, the weights' sha256
    cost: dict | None = None  # cost.card_summary: sizes, CPU speed, probe accuracies, summary lines
    history: dict | None = None  # check-updates --retrain: the previous run, teacher changes, old vs new
    beta_note: str | None = None  # which beta the run used and why (`beta_note`)
    terms: dict | None = None  # AFTTrainer.terms_summary: distillation, unlabelled rows, the probe's accuracy
    terms_note: str | None = None  # the same in one line (`terms_note`)
    groups: dict | None = None  # group_report.group_report: per-group results, flags, inherited errors
    problem_type: str = "single_label_classification"  # targets.py: single-, multi-label or regression
    threshold: float | None = None  # a multi-label head's decision threshold
    target_scale: list | None = None  # per regression target {"mean", "std"}, folded into the head
    run_id: str | None = None  # the run that wrote the card first (claims.py); kept when it is rendered again

    @classmethod
    def of(cls, facts: CardFacts | str | None = None, **named) -> CardFacts:
        """`facts` as is, or built from the transfer name and keyword facts (unknown keys are dropped, so a
        model_card.json written by another version still renders)."""
        if isinstance(facts, CardFacts):
            return facts
        known = {f.name for f in fields(cls)}
        return cls(**({"transfer": facts} if facts else {}), **{k: v for k, v in named.items() if k in known})


def template_path() -> str:
    return str(resources.files("hf_aft.model_cards") / "aft_student.md")


def framework_versions() -> dict[str, str]:
    """The versions the card lists (a subset of what the audit record keeps)."""
    names = ("hf-aft", "transformers", "torch", "datasets", "accelerate", "huggingface_hub")
    versions = library_versions()
    return {name: versions[name] for name in names if name in versions}


def _metrics(results: dict | None) -> dict[str, float]:
    """`eval_accuracy`-style keys -> `accuracy`, keeping only the metrics the card reports."""
    return {k.removeprefix("eval_"): v for k, v in (results or {}).items()
            if isinstance(v, (int, float)) and k.removeprefix("eval_") in EVAL_METRICS}


def distilled(terms: dict | None) -> bool:
    """Whether a distillation term trained the student (a --transfer none run is then not plain fine-tuning)."""
    return (terms or {}).get("distill") not in (None, "none")


def default_title(transfer: str, terms: dict | None = None) -> str:
    if transfer == "none":
        return "Distilled student" if distilled(terms) else "Fine-tuning baseline (STL)"
    return "AFT student"


def hub_id(name: str | None) -> str | None:
    """`name` when it can only be a Hub repo id; None for a local path (which could otherwise pass for someone
    else's repo in the card's metadata) or anything the Hub would refuse."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not name or os.path.exists(name) or name.startswith((".", "/", "~")) or name.count("/") > 1:
        return None
    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name


def render_model_card(facts: CardFacts | str | None = None, **named) -> ModelCard:
    """The student's model card from its `CardFacts` (or the same facts as keywords: `render_model_card("aft",
    beta=0.1, ...)`)."""
    facts = CardFacts.of(facts, **named)
    if facts.task not in TASK_CLASSES:
        raise AFTError(f"unknown task {facts.task!r} for the model card: choose one of {', '.join(TASK_CLASSES)}.")
    model_class, preprocessor_class, preprocessor_name = TASK_CLASSES[facts.task]
    eval_results, baseline = _metrics(facts.eval_results), _metrics(facts.baseline_results)
    dataset = hub_id(facts.dataset_name)
    datasets = [name for name in (dataset, hub_id((facts.unlabeled_data or {}).get("name"))) if name]
    index = [EvalResult(task_type=facts.task, dataset_type=dataset, dataset_name=dataset, metric_type=metric,
                        metric_value=value) for metric, value in eval_results.items() if dataset and metric != "loss"]
    card_data = ModelCardData(
        library_name="transformers", pipeline_tag=facts.task, base_model=hub_id(facts.base_model),
        datasets=datasets or None,
        tags=["hf-aft", "adaptive-feature-transfer", f"transfer-{facts.transfer}"],
        model_name=facts.repo_id or default_title(facts.transfer, facts.terms), eval_results=index or None,
    )
    shown = {**asdict(facts), "teachers": facts.teachers or [], "scales": facts.scales or {},
             "eval_results": eval_results, "baseline": {k: v for k, v in baseline.items() if k in eval_results},
             "versions": facts.versions if facts.versions is not None else framework_versions(),
             "repo_id": facts.repo_id or "path/to/this/folder",
             "model_name": facts.repo_id or default_title(facts.transfer, facts.terms),
             "task_description": task_description(facts.task, facts.problem_type),
             "method_name": ("distillation, without feature transfer" if facts.transfer == "none" else
                             METHOD_NAMES.get(facts.transfer, facts.transfer)), "model_class": model_class,
             "preprocessor_class": preprocessor_class, "preprocessor_name": preprocessor_name,
             "probe_error": probe_error(facts.terms or {})}
    return ModelCard.from_template(card_data, template_path=template_path(), **shown)


def write_model_card(output_dir: str, facts: CardFacts | str | None = None, **named) -> ModelCard:
    """Draw the scale plot (AFT runs), keep the facts in model_card.json, write README.md."""
    facts = CardFacts.of(facts, **named)
    scales = teacher_scales(output_dir)
    facts.scales_plot = None
    if scales:
        write_scales_plot(scales, os.path.join(output_dir, SCALES_PLOT_NAME))
        facts.scales_plot = SCALES_PLOT_NAME
    if facts.versions is None:
        facts.versions = framework_versions()
    facts.run_id = facts.run_id or current_run_id()
    card = render_model_card(facts)
    with open(os.path.join(output_dir, CARD_INPUTS_NAME), "w") as f:
        json.dump(asdict(facts), f, indent=2, default=str)
    card.save(os.path.join(output_dir, CARD_NAME))
    return card


def hyperparameters_in_effect(args, state, teacher_lengths: list[int | None] | None = None) -> dict:
    """The settings that shaped the run, with the steps and epochs actually run (not `max_steps` and
    `num_train_epochs` side by side, one of which the Trainer ignored) and the teachers' text lengths as they read
    (`teacher_lengths`, per teacher: `--teacher_max_length` or the teacher's own smaller limit; none for images)."""
    skip = {"num_train_epochs", "max_steps"} | ({"scales_learning_rate", "teacher_max_length"}
                                                 if args.transfer == "none" else set())
    shown = {key: getattr(getattr(args, key), "value", getattr(args, key)) for key in HYPERPARAMETERS
             if key not in skip}
    if "teacher_max_length" in shown and teacher_lengths is not None:
        lengths = [length for length in teacher_lengths if length]
        if not lengths:  # image teachers read no text
            del shown["teacher_max_length"]
        elif any(length != args.teacher_max_length for length in lengths):
            shown["teacher_max_length"] = (" / ".join(map(str, lengths)) + " (the teachers' own limit under "
                                           f"--teacher_max_length {args.teacher_max_length})")
    return {**shown, "steps run": state.global_step, "epochs run": round(float(state.epoch or 0), 2)}


def _class_names(model) -> list[str] | None:
    id2label = getattr(getattr(model, "config", None), "id2label", None) or {}
    names = [id2label[i] for i in sorted(id2label)]
    return None if all(name == f"LABEL_{i}" for i, name in enumerate(names)) else names


def beta_note(args, beta_search: dict | None = None, terms: dict | None = None) -> str:
    """One line: which beta a run used and why (`hf-aft train` prints it, the card says it); `terms`:
    `AFTTrainer.terms_summary()` (a --transfer none run with distillation is not plain fine-tuning)."""
    if args.transfer == "none":
        return ("beta: not used (--transfer none: distillation without feature transfer)" if distilled(terms)
                else "beta: not used (--transfer none: plain fine-tuning)")
    if beta_search:
        return f"beta = {args.beta:g} ({beta_search['reason']})"
    how = "the default" if args.beta == DEFAULT_BETA else "set with --beta or in --config"
    return f"beta = {args.beta:g} ({how}; --beta auto chooses it on held-out data)"


def probe_error(terms: dict) -> str:
    """", standard error 0.021": the binomial standard error sqrt(p (1 - p) / n) of the probe's cross-validated
    accuracy p over the n labelled rows (words, for tokens) it scored (accuracy only; "" for the other metrics)."""
    p, n = terms.get("probe_accuracy"), terms.get("probe_scored")
    if (terms.get("probe_metric") or "accuracy") != "accuracy" or p is None or not n:
        return ""
    return f", standard error {(p * (1 - p) / n) ** 0.5:.3f}"


def terms_note(terms: dict | None) -> str | None:
    """One line: the terms beside the task loss that were on (distillation, unlabelled rows; then the feature
    transfer too, by name and beta), or None if neither distillation nor unlabelled rows were."""
    if not terms:
        return None
    parts = []
    if terms.get("distill", "none") != "none":
        logits = terms["distill"] == "logits"
        source = f"task teacher {terms['distill_teacher']}" if logits else "the teachers' probe"
        temperature = terms.get("distill_temperature")
        parts.append(f"distillation from {source} (weight {terms['distill_weight']:g}"
                     + (f", temperature {temperature:g})" if temperature is not None else ")"))
    if terms.get("unlabeled_rows"):
        augmented = terms.get("augmented_rows") or 0
        made = (f", {augmented:,} of them augmented copies of the labelled {terms.get('augmented_from') or 'texts'}"
                if augmented else "")
        if terms.get("generated_rows"):
            made += f", {terms['generated_rows']:,} of them written by {terms['generator']}"
        drawn = terms.get("unlabeled_rows_drawn")
        of = f"the {terms['unlabeled_rows']:,}" if made else "them"  # not "of them" after the copies
        drawn = f" ({drawn:,} of {of} drawn in the steps trained)" if drawn is not None else ""
        labelled = {None: "", 0: "; no labelled row drawn: the task loss never trained"}.get(
            terms.get("labeled_rows_drawn"), f"; {terms.get('labeled_rows_drawn')} labelled rows drawn")
        parts.append(f"{terms['unlabeled_rows']:,} unlabelled rows{made}{drawn} beside {terms['labeled_rows']:,} "
                     f"labelled (labelled share of each batch {terms['labeled_fraction'] * 100:.3g}%{labelled})")
    if terms.get("probe_accuracy") is not None:
        metric = metric_name(terms.get("probe_metric") or "accuracy")
        parts.append(f"probe {metric} {terms['probe_accuracy']:.4f} (cross-validated on the training labels"
                     f"{probe_error(terms)}; its folds follow --seed)")
    if parts and terms.get("transfer") not in (None, "none"):
        parts.insert(0, f"{terms['transfer'].upper()} transfer (beta {terms['beta']:g})")
    return ("terms: " + "; ".join(parts)) if parts else None


def card_facts_from_trainer(trainer, model_name: str | None = None, dataset_name: str | None = None,
                            baseline_results: dict | None = None, beta_search: dict | None = None,
                            eval_split: str | None = None, unlabeled_data: dict | None = None) -> CardFacts:
    """What an `AFTTrainer` knows about its run, as card facts."""
    args = trainer.args
    evals = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    rows = len(trainer.eval_dataset) if evals and hasattr(trainer.eval_dataset, "__len__") else None
    return CardFacts(
        transfer=args.transfer, beta=args.beta, kernel=args.kernel,
        teachers=[{**vars(info), "short_name": name} for info, name in zip(trainer.teacher_infos,
                                                                          trainer.teacher_names, strict=True)],
        scales=trainer.scale_summary(), eval_results=evals[-1] if evals else None, dataset_name=dataset_name,
        unlabeled_data=unlabeled_data,
        base_model=getattr(trainer.model.config, "_name_or_path", None) or None,
        repo_id=args.hub_model_id or model_name,
        hyperparameters=hyperparameters_in_effect(args, trainer.state, [i.max_length for i in trainer.teacher_infos]),
        labels=_class_names(trainer.model),
        eval_split={"name": eval_split or "eval", "rows": rows} if rows is not None else None,
        baseline_results=baseline_results, peft=peft_settings(trainer.model), beta_search=beta_search,
        task="image-classification" if trainer.image_column else "token-classification" if is_token_model(
            trainer.model) else "text-classification",
        balance_teachers=args.balance_teachers and trainer.transfer_loss is not None,
        beta_note=beta_note(args, beta_search, trainer.terms_summary()), terms=trainer.terms_summary(),
        terms_note=terms_note(trainer.terms_summary()), **_problem_facts(trainer.model),
    )


def _problem_facts(model) -> dict:
    """The problem type and what reads its outputs: a multi-label threshold, a regression's folded scale."""
    config = getattr(model, "config", None)
    facts = {"problem_type": model_problem_type(model)}
    if getattr(config, "decision_threshold", None) is not None:
        facts["threshold"] = config.decision_threshold
    if getattr(config, "target_mean", None) is not None:
        means, stds = (np.atleast_1d(np.asarray(v, dtype=float)).tolist() for v in (config.target_mean,
                                                                                    config.target_std))
        facts["target_scale"] = [{"mean": m, "std": s} for m, s in zip(means, stds, strict=True)]
    return facts


def read_baseline(baseline_dir: str, dataset_name: str | None = None) -> dict[str, float]:
    """The eval results of a plain fine-tuning run's output dir, checked to be a `--transfer none` run on the same
    data when that run's card inputs say so."""
    path = os.path.join(baseline_dir, "eval_results.json")
    try:
        with open(path) as f:
            results = json.load(f)
    except (OSError, ValueError) as error:
        raise AFTError(f"could not read the baseline's results {path!r} ({type(error).__name__}): point "
                       "--baseline_dir at the output dir of an `hf-aft train --transfer none` run with an eval split."
                       ) from error
    info = read_card_inputs(baseline_dir) or {}
    if info.get("transfer", "none") != "none":
        raise AFTError(f"--baseline_dir {baseline_dir!r} is a --transfer {info['transfer']} run; the baseline must "
                       "be plain fine-tuning (--transfer none).")
    if distilled(info.get("terms")):
        raise AFTError(f"--baseline_dir {baseline_dir!r} is a --transfer none run with --distill "
                       f"{info['terms']['distill']}; the baseline must be plain fine-tuning (--distill none).")
    if dataset_name and info.get("dataset_name") and info["dataset_name"] != dataset_name:
        raise AFTError(f"--baseline_dir {baseline_dir!r} was trained on {info['dataset_name']!r}, not "
                       f"{dataset_name!r}: compare runs on the same data.")
    if not _metrics(results):
        raise AFTError(f"{path!r} holds no accuracy, macro_f1 or loss to compare with.")
    return results
