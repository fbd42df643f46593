"""Uni-Modal Teacher (``umt``): each encoder of the fused model keeps what its single-modality model learnt.

Du, Teng, Wang, Wu, Yu, Li, Yuan & Zhao, ICML 2023, "On Uni-Modal Feature Learning in Supervised
Multi-Modal Learning". Trained end to end, a fused model learns less of each modality's features
than that modality's own model does (their linear probes, ``eval.imbalance``); the Uni-Modal Teacher
distils each single-modality model's encoder features into the fused model's encoder of that
modality while the fused loss trains the whole. Here:

* **Teachers**: one single-modality model per modality with a trainable encoder (``fit`` hands it
  the baselines it trains anyway, training them before the fused model; elsewhere ``train_model``
  trains them first, ``train_teachers``). A frozen encoder (a cached MiniLM) has nothing to learn
  and no teacher.
* **Warm start** (not in the paper, which trains the student from scratch): each student encoder
  starts from its teacher's weights, so the fused model starts where every single-modality model
  ended and the distillation keeps it there while the fusion learns to combine them.
* **Distillation term**: per modality, on the rows that hold it, the squared distance between the
  student's and the teacher's (pooled) fusion inputs relative to the teacher's mean squared norm
  (``relative_distance``: scale-free, so encoders of any width and scale weigh alike), averaged over
  modalities and weighted by ``DISTILL_WEIGHT``. The paper's term is the plain L2 distance with a
  tuned weight. The teacher runs in eval mode without gradient, once over the training rows before
  training (a step reads its rows' features through ``Batch.rows``); on an augmented batch, whose
  inputs are no longer the table's, it runs on the step's batch (``see_batch``). Each epoch's mean
  term per modality is logged as ``umt_distance_<modality>``.

The teachers are not saved with the model; the student's weights are a plain fused model.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from polyfuse.config import HeadConfig
from polyfuse.data.batch import Batch, EncodedTable, gather, row_chunks
from polyfuse.models.multimodal import MultimodalModel, has_tokens
from polyfuse.registry import BALANCERS
from polyfuse.train.balancers.base import Balancer, pooled, taught

DISTILL_WEIGHT = 1.0  # weight of the distillation term against the fused loss
EPS = 1e-8
CHUNK = 256  # rows per teacher pass when computing the training rows' features


def relative_distance(student: Tensor, teacher: Tensor) -> Tensor:
    """``mean ||s - t||^2 / mean ||t||^2`` over rows [R, D] (0 when equal; 1 when s is 0)."""
    return ((student - teacher) ** 2).sum(1).mean() / (teacher**2).sum(1).mean().clamp(min=EPS)


def teacher_features(encoder: nn.Module, inputs: Any, tokens: bool) -> Tensor:
    """What the teacher's encoder gives a student of this fusion kind, pooled to [B, D]: mean of its
    valid tokens when the student's fusion takes tokens (``forward_tokens``), else its embedding."""
    if tokens and has_tokens(encoder):
        values, valid = encoder.forward_tokens(inputs)  # type: ignore[operator]
        return pooled(values, valid)
    return encoder(inputs)  # type: ignore[no-any-return]


class UniModalTeacher(Balancer):
    """Distils each single-modality model's encoder into the fused one (see the module's docstring)."""

    wants_teachers = True

    def __init__(self, tokens: bool, weight: float = DISTILL_WEIGHT) -> None:
        super().__init__()
        self.tokens = tokens  # the student's fusion takes token sequences
        self.weight = weight
        # Plain dicts, not submodules: the teachers train nothing and stay out of the task's state.
        self.teachers: dict[str, nn.Module] = {}
        self.features: dict[str, Tensor] = {}  # modality -> the teacher's features of each training row
        self.batch: Batch | None = None
        self.sums: dict[str, list[float]] = {}  # modality -> this epoch's terms

    def use_teachers(
        self, model: MultimodalModel, teachers: dict[str, MultimodalModel], train: EncodedTable
    ) -> None:
        """Keeps a frozen copy of each trainable modality's teacher encoder, starts the student's encoder
        from its weights (same encoder config, so the same keys) and computes the teacher's features of
        every training row once (the teacher never changes; ``Batch.rows`` finds a step's rows)."""
        for name, teacher in teachers.items():
            if name not in model.encoders or model.is_cacheable(name):
                continue
            frozen = copy.deepcopy(teacher.encoders[name]).eval()
            for p in frozen.parameters():
                p.requires_grad_(False)
            self.teachers[name] = frozen
            model.encoders[name].load_state_dict(frozen.state_dict())
            self.features[name] = self._teach(frozen, name, train)

    @torch.no_grad()
    def _teach(self, teacher: nn.Module, name: str, table: EncodedTable) -> Tensor:
        """The teacher's (pooled) features of every row of ``table``, [N, D]."""
        chunks = (gather(table.inputs[name], rows) for rows in row_chunks(len(table), CHUNK))
        return torch.cat([teacher_features(teacher, inputs, self.tokens) for inputs in chunks])

    def see_batch(self, batch: Batch) -> None:
        self.batch = batch

    def loss(
        self,
        inputs: dict[str, Tensor],
        valid: dict[str, Tensor] | None,
        mask: dict[str, Tensor],
        targets: dict[str, Tensor],
    ) -> Tensor:
        terms = []
        for name in self.teachers:
            rows = mask[name]
            student = inputs[name]
            if self.batch is None or not bool(rows.any()) or not student.requires_grad:
                continue
            target = self._targets(name, self.batch).to(student.device)
            term = relative_distance(pooled(student, (valid or {}).get(name))[rows], target[rows])
            self.sums.setdefault(name, []).append(float(term.detach()))
            terms.append(term)
        if not terms:
            return next(iter(inputs.values())).new_zeros(())
        return self.weight * torch.stack(terms).mean()

    @torch.no_grad()
    def _targets(self, name: str, batch: Batch) -> Tensor:
        """The teacher's features of the batch's rows: precomputed when the batch holds table rows as
        they are, else (augmented inputs) from a pass of the teacher."""
        if batch.rows is not None:
            return self.features[name][batch.rows.cpu()]
        teacher = self.teachers[name].to(batch.mask[name].device)
        return teacher_features(teacher, batch.inputs[name], self.tokens)

    def epoch_end(self, model: MultimodalModel, epoch: int) -> dict[str, float]:
        logged = {f"umt_distance_{m}": sum(v) / len(v) for m, v in self.sums.items() if v}
        self.sums = {}
        return logged

    def release(self) -> None:
        self.teachers, self.features, self.batch = {}, {}, None


@BALANCERS.register("umt")
@taught
def uni_modal_teacher(model: MultimodalModel, heads: list[HeadConfig], losses: Any) -> Balancer | None:
    """Uni-Modal Teacher distillation from single-modality models (``UniModalTeacher``); nothing to
    balance for one modality or when every encoder is frozen."""
    if len(model.encoders) < 2 or all(model.is_cacheable(m) for m in model.encoders):
        return None
    return UniModalTeacher(tokens=model.wants_tokens)
