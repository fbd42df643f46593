"""Task heads, registered in ``HEADS`` under the task they serve."""

from polyfuse.heads import mlp  # noqa: F401  (registers multiclass, binary, multilabel, regression)
from polyfuse.heads.mlp import BinaryHead, MulticlassHead, MultilabelHead, RegressionHead, TaskHead

__all__ = ["BinaryHead", "MulticlassHead", "MultilabelHead", "RegressionHead", "TaskHead"]
