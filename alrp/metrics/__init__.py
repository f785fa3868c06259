"""Detection metrics: COCO AP/AR (pycocotools), oLRP and components, rho; plots and the printed report."""
from .coco import EvaluationInputError, load_gt, load_results
from .evaluation import METRIC_KEYS, Evaluation, detection_metrics, compute_evaluation
from .report import format_metrics, metrics_to_json

__all__ = ["EvaluationInputError", "load_gt", "load_results", "METRIC_KEYS", "Evaluation", "detection_metrics",
           "compute_evaluation", "format_metrics", "metrics_to_json"]
