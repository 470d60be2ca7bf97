"""hf-aft: Adaptive Feature Transfer (Qiu et al., ICML 2024) for the Hugging Face ecosystem.

The public names below are imported on first use (PEP 562), so `hf-aft --help` and `import hf_aft` stay fast and only
the command that needs torch and transformers pays for them.
"""

from importlib import import_module

__version__ = "0.1.0"

# public name -> the module that owns it, in the order data flows through them
_PUBLIC = {
    "AFTError": "errors",
    "Labels": "data", "load_labelled_splits": "data",
    "TeacherInfo": "features", "extract_teacher_features": "features", "read_teacher_infos": "features",
    "with_teacher_features": "features", "map_beside_features": "features",
    "load_student": "student", "save_truncated_student": "student_init", "tokenize_beside_features": "student",
    "fold_target_scale": "student",
    "AdaptiveKernelLoss": "losses", "KDLoss": "losses", "RKDLoss": "losses", "build_transfer_loss": "losses",
    "AFTConfig": "config", "TeacherArguments": "config",
    "ClassificationMetrics": "metrics", "compute_classification_metrics": "metrics", "compute_metrics_for": "metrics",
    "AFTTrainer": "trainer",
    "group_results": "groups", "inherited_errors": "groups", "group_report": "group_report",
    "search_beta": "beta_search",
    "rank_teachers": "ranking",
    "train_student": "pipeline",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'hf_aft' has no attribute {name!r}")
    value = getattr(import_module(f".{_PUBLIC[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_PUBLIC])
