"""Evaluation of frozen features: the evaluator registry and its evaluators (weighted kNN,
linear probe, few-label linear probe), declared in ``config.evals``."""

from cl_jax.evaluation.image_text import retrieval_recall, zeroshot_accuracy, zeroshot_classifier
from cl_jax.evaluation.knn import knn_accuracy, knn_predict
from cl_jax.evaluation.linear import fewshot_accuracy, linear_accuracy
from cl_jax.evaluation.registry import EVALUATORS, check_evals, evaluator, run_evaluators

__all__ = ["EVALUATORS", "check_evals", "evaluator", "fewshot_accuracy", "knn_accuracy",
           "knn_predict", "linear_accuracy", "retrieval_recall", "run_evaluators",
           "zeroshot_accuracy", "zeroshot_classifier"]
