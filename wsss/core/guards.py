"""Numerical guards: training stops at the first loss or gradient that is not finite.

A NaN or an infinity in the loss or in any gradient means the run diverged (too high a learning
rate, a bad input). Checked after every backward pass, before the optimiser step, so the weights
never take a non-finite value; the error names the stage, the step and the last finite loss, the
job fails (Snakemake removes its outputs) and the checkpoint written before the blow-up, if any, stays.
"""

from __future__ import annotations

from pathlib import Path

import torch


class NonFiniteError(FloatingPointError):
    """Training produced a loss or a gradient that is not finite."""


class FiniteGuard:
    """Tracks the last finite loss of one training stage and raises at the first non-finite one."""

    def __init__(self, stage: str, checkpoint: str = ""):
        self.stage = stage
        self.checkpoint = checkpoint
        self.last_finite: tuple[str, float] | None = None

    def check(self, loss: torch.Tensor, parameters, step: str, gradient_overflow_allowed: bool = False) -> float:
        """The loss as a float, after checking it and the gradients of `parameters` (one device sync).

        `gradient_overflow_allowed`: fp16 with a loss scaler, whose too-large scale overflows the gradients now
        and then by design (the scaler skips that step); only a non-finite loss stops the run then."""
        gradients = [p.grad.detach() for p in parameters if p.grad is not None]
        gradient_norm = torch.nn.utils.get_total_norm(gradients) if gradients else torch.zeros((), device=loss.device)
        finite = torch.isfinite(torch.stack([loss.detach().float().reshape(()), gradient_norm.float()]))
        value = float(loss.detach())
        if not bool(finite[0]) or not (bool(finite[1]) or gradient_overflow_allowed):
            what = "loss" if not bool(finite[0]) else "gradient"
            raise NonFiniteError(self._message(what, value, step))
        self.last_finite = (step, value)
        return value

    def _checkpoint_note(self) -> str:
        """What the error says of the checkpoint: only one that is on disk is named."""
        if not self.checkpoint:
            return ""
        if Path(self.checkpoint).is_file():
            return f"; the checkpoint from before it is kept ({self.checkpoint})"
        return "; no checkpoint was written before it"

    def _message(self, what: str, value: float, step: str) -> str:
        last = ("no finite loss before it" if self.last_finite is None
                else f"last finite loss {self.last_finite[1]:.6g} at {self.last_finite[0]}")
        kept = self._checkpoint_note()
        return (f"{self.stage}: the {what} is not finite at {step} (loss {value}); {last}{kept}. The run "
                f"diverged: lower the learning rate or check the inputs")
