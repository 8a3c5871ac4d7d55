"""Evaluation of frozen features: the evaluator registry and its evaluators (weighted kNN,
linear probe, few-label linear probe, collapse monitors, zero-shot, retrieval, STS), declared in
``config.evals``."""

from cl_jax.evaluation.collapse import (
    alignment,
    collapse_metrics,
    collapse_warning,
    embedding_std,
    rankme,
    uniformity,
)
from cl_jax.evaluation.image_text import retrieval_recall, zeroshot_accuracy, zeroshot_classifier
from cl_jax.evaluation.knn import knn_accuracy, knn_predict
from cl_jax.evaluation.linear import fewshot_accuracy, linear_accuracy
from cl_jax.evaluation.postprocess import (
    Flow,
    apply_whitening,
    fit_flow,
    flow_transform,
    whitening,
)
from cl_jax.evaluation.registry import EVALUATORS, check_evals, evaluator, run_evaluators
from cl_jax.evaluation.sts import spearman, sts_spearman, text_recall

__all__ = ["EVALUATORS", "Flow", "alignment", "apply_whitening", "check_evals",
           "collapse_metrics", "collapse_warning", "embedding_std", "fit_flow", "rankme",
           "uniformity",
           "flow_transform", "whitening", "evaluator", "fewshot_accuracy", "knn_accuracy",
           "knn_predict", "linear_accuracy", "retrieval_recall", "run_evaluators",
           "spearman", "sts_spearman", "text_recall", "zeroshot_accuracy", "zeroshot_classifier"]
