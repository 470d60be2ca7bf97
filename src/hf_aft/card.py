"""The student's model card: rendered from the Jinja template `hf_aft.model_cards/aft_student.md` with
`huggingface_hub.ModelCard.from_template`. `render_model_card` is a pure function of its arguments."""

from __future__ import annotations

from importlib import metadata, resources

from huggingface_hub import EvalResult, ModelCard, ModelCardData

METHOD_NAMES = {"aft": "Adaptive Feature Transfer (AFT)", "kd": "knowledge distillation of features (KD)",
                "rkd": "relational knowledge distillation (RKD)", "none": "plain fine-tuning"}
HYPERPARAMETERS = ("learning_rate", "scales_learning_rate", "per_device_train_batch_size", "num_train_epochs",
                   "max_steps", "seed", "weight_decay", "lr_scheduler_type", "teacher_max_length")


def template_path() -> str:
    return str(resources.files("hf_aft.model_cards") / "aft_student.md")


def framework_versions() -> dict[str, str]:
    names = ("hf-aft", "transformers", "torch", "datasets", "accelerate", "huggingface_hub")
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def render_model_card(
    transfer: str,
    beta: float | None = None,
    kernel: str = "linear",
    teachers: list[dict] | None = None,
    scales: dict[str, dict[str, float]] | None = None,
    eval_results: dict[str, float] | None = None,
    base_model: str | None = None,
    dataset_name: str | None = None,
    repo_id: str | None = None,
    hyperparameters: dict | None = None,
    versions: dict[str, str] | None = None,
    peft: dict | None = None,
    beta_search: dict | None = None,
) -> ModelCard:
    """A model card for a student. Optional arguments left out are left out of the card. `peft`: the adapter's
    settings (a PEFT student loads with peft); `beta_search`: what `--beta auto` tried and chose."""
    teachers = teachers or []
    eval_results = {k.removeprefix("eval_"): v for k, v in (eval_results or {}).items()
                    if isinstance(v, (int, float)) and k.removeprefix("eval_") in ("accuracy", "macro_f1", "loss")}
    index = [
        EvalResult(task_type="text-classification", dataset_type=dataset_name, dataset_name=dataset_name,
                   metric_type=metric, metric_value=value)
        for metric, value in eval_results.items() if dataset_name and metric != "loss"
    ]
    card_data = ModelCardData(
        library_name="transformers", pipeline_tag="text-classification",
        base_model=base_model if base_model and not base_model.startswith(("/", ".")) else None,
        datasets=[dataset_name] if dataset_name and not dataset_name.startswith(("/", ".")) else None,
        tags=["hf-aft", "adaptive-feature-transfer", f"transfer-{transfer}"],
        model_name=repo_id or "aft-student", eval_results=index or None,
    )
    return ModelCard.from_template(
        card_data, template_path=template_path(), model_name=repo_id or "AFT student",
        task_description="text classification", method_name=METHOD_NAMES.get(transfer, transfer), transfer=transfer,
        beta=beta, kernel=kernel, teachers=teachers, scales=scales or {}, eval_results=eval_results,
        base_model=base_model, dataset_name=dataset_name, repo_id=repo_id or "path/to/this/folder",
        hyperparameters=hyperparameters or {}, versions=versions if versions is not None else framework_versions(),
        peft=peft, beta_search=beta_search,
    )
