"""One small registry class and the project's registries.

A part registers itself by name with a decorator; builders look names up here, never through
if/elif ladders. Each family's ``__init__`` imports its modules explicitly so that registering
happens on import of the family, not of ``polyfuse``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> class (or factory) mapping with a decorator to fill it."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.family} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise KeyError(f"unknown {self.family} {name!r}; known: {known}") from None

    def build(self, name: str, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)  # type: ignore[operator]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


ENCODERS: Registry[Any] = Registry("encoder")
FUSIONS: Registry[Any] = Registry("fusion")
HEADS: Registry[Any] = Registry("head")
LOSSES: Registry[Any] = Registry("loss")
PROCESSORS: Registry[Any] = Registry("processor")
DATASETS: Registry[Any] = Registry("dataset")
MODALITIES: Registry[Any] = Registry("modality")
OPTIMIZERS: Registry[Any] = Registry("optimizer")  # (params, lr, weight_decay) -> Optimizer
SCHEDULERS: Registry[Any] = Registry("scheduler")  # (optimizer, TrainConfig) -> LRScheduler | None
CALLBACKS: Registry[Any] = Registry("training callback")  # (TrainConfig) -> Lightning Callback
BALANCERS: Registry[Any] = Registry("balancing strategy")  # (model, heads, losses) -> Balancer | None
LOSS_WEIGHTINGS: Registry[Any] = Registry("loss weighting")  # (model, heads) -> LossWeighting | None
AUGMENTATIONS: Registry[Any] = Registry("augmentation")  # (inputs, generator) -> inputs; .kinds
DROPOUT_SCHEDULES: Registry[Any] = Registry("modality dropout schedule")  # (rate, epoch, epochs) -> rate
