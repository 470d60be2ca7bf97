"""hf-aft: Adaptive Feature Transfer (Qiu et al., ICML 2024) for the Hugging Face ecosystem."""

from .beta_search import search_beta
from .config import AFTConfig
from .errors import AFTError
from .features import TeacherInfo, extract_teacher_features, read_teacher_infos
from .losses import AdaptiveKernelLoss, KDLoss, RKDLoss, build_transfer_loss
from .metrics import ClassificationMetrics, compute_classification_metrics
from .trainer import AFTTrainer

__version__ = "0.1.0"
__all__ = [
    "AFTConfig", "AFTError", "AFTTrainer", "AdaptiveKernelLoss", "ClassificationMetrics", "KDLoss", "RKDLoss",
    "TeacherInfo", "build_transfer_loss", "compute_classification_metrics", "extract_teacher_features",
    "read_teacher_infos", "search_beta",
]
