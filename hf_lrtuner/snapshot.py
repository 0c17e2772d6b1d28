"""`TrainingSnapshot`: an in-memory copy of the training state that trials start from and return to."""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch


def _copy_value(value: Any) -> Any:
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


class TrainingSnapshot:
    """Copies of a model's parameters and buffers, an optimizer's state and hyperparameters, and a grad scaler.

    Restoring copies the values back into the same tensors, so references held elsewhere (DDP buckets, fused
    optimizers, accelerate wrappers) stay valid. The copies live on the tensors' own devices and are reused by the
    next `capture()`, so a run holds one snapshot's worth of extra memory.

    Args:
        model (`torch.nn.Module`): the model (for DDP, the wrapped module's parameters are the same tensors).
        optimizer (`torch.optim.Optimizer`): the optimizer that the training updates step.
        scaler (`torch.amp.GradScaler`, *optional*): the fp16 loss scaler, if one is used.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: Optional[Any] = None):
        self.model = model
        self.optimizer = optimizer
        self.scaler = scaler
        self._tensors = list(model.parameters()) + list(model.buffers())
        self._tensor_copies: Optional[list] = None
        self._optimizer_state: Dict[torch.Tensor, Dict[str, Any]] = {}
        self._group_settings: list = []
        self._scaler_state: Optional[dict] = None

    @torch.no_grad()
    def capture(self):
        if self._tensor_copies is None:
            self._tensor_copies = [t.detach().clone() for t in self._tensors]
        else:
            for copy, tensor in zip(self._tensor_copies, self._tensors):
                copy.copy_(tensor)
        self._optimizer_state = {
            param: {key: _copy_value(value) for key, value in state.items()}
            for param, state in self.optimizer.state.items()
        }
        self._group_settings = [
            {key: _copy_value(value) for key, value in group.items() if key != "params"}
            for group in self.optimizer.param_groups
        ]
        self._scaler_state = self.scaler.state_dict() if self.scaler is not None else None

    @torch.no_grad()
    def restore(self):
        if self._tensor_copies is None:
            raise RuntimeError("TrainingSnapshot.restore() called before capture().")
        for copy, tensor in zip(self._tensor_copies, self._tensors):
            tensor.copy_(copy)
        state = self.optimizer.state
        for param in [p for p in state if p not in self._optimizer_state]:
            del state[param]  # state created lazily during a trial (e.g. Adam moments before the first update)
        for param, saved in self._optimizer_state.items():
            current = state.setdefault(param, {})
            for key, value in saved.items():
                target = current.get(key)
                if isinstance(value, torch.Tensor) and isinstance(target, torch.Tensor) and target.shape == value.shape:
                    target.copy_(value)
                else:
                    current[key] = _copy_value(value)
        for group, saved in zip(self.optimizer.param_groups, self._group_settings):
            for key, value in saved.items():
                if isinstance(group.get(key), torch.Tensor) and isinstance(value, torch.Tensor):
                    group[key].copy_(value)
                else:
                    group[key] = _copy_value(value)
        if self._scaler_state is not None:
            self.scaler.load_state_dict(self._scaler_state)
        self.optimizer.zero_grad(set_to_none=True)
