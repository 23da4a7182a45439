"""What stops a run that learns nothing: a NaN/Inf loss or gradient (:class:`TrainingDiverged`) and a loss that
stays exactly constant with all-zero gradients (:class:`ConstantLossGuard`)."""

from __future__ import annotations

from typing import Any

__all__ = ["ConstantLossGuard", "TrainingDiverged"]


class TrainingDiverged(RuntimeError):
    """The loss or the gradients became NaN/Inf; the last good checkpoint is left untouched."""


class ConstantLossGuard:
    """Stops a run whose loss has been exactly the same, with all-zero gradients, for ``patience`` steps: nothing
    is learned (e.g. a contrastive batch without negatives). A constant loss with gradients is warned about once."""

    def __init__(self, say: Any, patience: int = 5) -> None:
        self.say, self.patience = say, patience
        self.value: float | None = None
        self.count = 0
        self.warned = False

    def check(self, step: int, loss: float, grad_norm: float) -> None:
        self.count = self.count + 1 if loss == self.value else 1
        self.value = loss
        if self.count < self.patience:
            return
        if grad_norm == 0.0:
            raise TrainingDiverged(f"step {step}: the loss has been exactly {loss!r} for {self.count} steps with "
                                   "all-zero gradients: nothing is being learned (degenerate batches or objective "
                                   "options); stopped")
        if not self.warned:
            self.warned = True
            self.say(f"warning: step {step}: the loss has been exactly {loss!r} for {self.count} steps")
