"""`TrainingSnapshot`: an in-memory copy of the training state that trials start from and return to."""

from __future__ import annotations

from typing import Any, Dict, Optional, Union

import torch

try:
    from torch.distributed.tensor import DTensor
except ImportError:  # a torch build without torch.distributed, or torch before 2.5: no FSDP2 (it needs 2.6)
    DTensor = None


def _copy_value(value: Any) -> Any:
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """This process's part of `tensor`: a DTensor's local shard (sharing its storage, so writing into it writes into
    the DTensor), any other tensor itself."""
    tensor = tensor.detach()
    return tensor.to_local() if DTensor is not None and isinstance(tensor, DTensor) else tensor


class _TensorCopy:
    """The local values of one tensor, and what it takes to rebuild the tensor if the optimizer dropped it."""

    __slots__ = ("values", "device", "spec")

    def __init__(self, values: torch.Tensor, tensor: torch.Tensor):
        self.values = values
        self.device = _local(tensor).device
        self.spec = None
        if DTensor is not None and isinstance(tensor, DTensor):
            self.spec = (tensor.device_mesh, tensor.placements, tensor.shape, tensor.stride())

    def rebuild(self) -> torch.Tensor:
        local = self.values.to(self.device, copy=True)
        if self.spec is None:
            return local
        mesh, placements, shape, stride = self.spec
        return DTensor.from_local(local, mesh, placements, run_check=False, shape=shape, stride=stride)


class TrainingSnapshot:
    """Copies of a model's parameters and buffers, an optimizer's state and hyperparameters, and a grad scaler.

    Restoring copies the values back into the same tensors, so references held elsewhere (DDP buckets, fused
    optimizers, accelerate wrappers, FSDP2's sharded parameters) stay valid. Only this process's part of a sharded
    tensor (a `DTensor`'s local shard under FSDP2) is copied: every process snapshots and restores its own shards. The
    copies are allocated by the first `capture()` and reused by the next ones.

    Args:
        model (`torch.nn.Module`): the model (for DDP, the wrapped module's parameters are the same tensors).
        optimizer (`torch.optim.Optimizer`): the optimizer that the training updates step.
        scaler (`torch.amp.GradScaler`, *optional*): the fp16 loss scaler, if one is used.
        device (`str` or `torch.device`, *optional*): where the copies live. `None` (the default): on each tensor's
            own device. `"cpu"`: in host memory, pinned when the tensors are on CUDA, with non-blocking copies and
            one synchronization at the end of each `capture()` and `restore()`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: Optional[Any] = None,
        device: Optional[Union[str, torch.device]] = None,
    ):
        self.model = model
        self.optimizer = optimizer
        self.scaler = scaler
        self.device = None if device is None else torch.device(device)
        self._tensors = list(model.parameters()) + list(model.buffers())
        self._tensor_copies: Optional[list] = None
        self._optimizer_state: Dict[torch.Tensor, Dict[str, Any]] = {}
        self._group_settings: list = []
        self._scaler_state: Optional[dict] = None

    @property
    def nbytes(self) -> int:
        """Bytes the copies of the parameters, buffers and optimizer state hold (0 before the first capture)."""
        copies = list(self._tensor_copies or []) + [
            value for state in self._optimizer_state.values() for value in state.values()
        ]
        return sum(c.values.numel() * c.values.element_size() for c in copies if isinstance(c, _TensorCopy))

    def _save(self, tensor: torch.Tensor, previous: Any, source: Optional[torch.Tensor] = None) -> _TensorCopy:
        """Copy `tensor`'s local values (or `source`, values saved for it) into `previous`'s buffer when it fits,
        else into a new one."""
        local = _local(tensor)
        source = local if source is None else source
        if isinstance(previous, _TensorCopy) and previous.values.shape == local.shape and (
            previous.values.dtype == local.dtype
        ):
            previous.values.copy_(source, non_blocking=True)
            return previous
        device = self.device if self.device is not None else local.device
        # pinned host memory is what lets device-to-host copies run without blocking
        values = torch.empty(local.shape, dtype=local.dtype, device=device,
                             pin_memory=device.type == "cpu" and local.device.type == "cuda")
        values.copy_(source, non_blocking=True)
        return _TensorCopy(values, tensor)

    def _synchronize(self):
        """Wait for the non-blocking copies between devices: nothing reads the state before they are done."""
        if self.device is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()

    @torch.no_grad()
    def capture(self):
        copies = self._tensor_copies or [None] * len(self._tensors)
        self._tensor_copies = [self._save(tensor, copy) for tensor, copy in zip(self._tensors, copies)]
        previous = self._optimizer_state
        self._optimizer_state = {
            param: {
                key: self._save(value, previous.get(param, {}).get(key)) if isinstance(value, torch.Tensor) else value
                for key, value in state.items()
            }
            for param, state in self.optimizer.state.items()
        }
        self._group_settings = [
            {key: _copy_value(value) for key, value in group.items() if key != "params"}
            for group in self.optimizer.param_groups
        ]
        self._scaler_state = self.scaler.state_dict() if self.scaler is not None else None
        self._synchronize()

    # ----------------------------------------------------------------------------------------- checkpoints
    def _tensor_names(self) -> list:
        return [name for name, _ in self.model.named_parameters()] + [name for name, _ in self.model.named_buffers()]

    def _optimizer_params(self) -> list:
        """The optimizer's parameters in `optimizer.state_dict()`'s order: how a checkpoint names them."""
        return [param for group in self.optimizer.param_groups for param in group["params"]]

    def state_dict(self) -> Dict[str, Any]:
        """The captured state as tensors and plain Python types (this process's shards under FSDP2), for
        `torch.save`; `torch.load(weights_only=True)` reads it back. Optimizer state is keyed by the parameter's
        index in the optimizer's parameter groups, as in `optimizer.state_dict()`."""
        if self._tensor_copies is None:
            raise RuntimeError("TrainingSnapshot.state_dict() called before capture().")
        index = {param: i for i, param in enumerate(self._optimizer_params())}
        return {
            "tensors": [copy.values for copy in self._tensor_copies],
            "optimizer_state": {
                index[param]: {key: value.values if isinstance(value, _TensorCopy) else value
                               for key, value in state.items()}
                for param, state in self._optimizer_state.items()
            },
            "param_groups": self._group_settings,
            "scaler": self._scaler_state,
        }

    @torch.no_grad()
    def load_state_dict(self, state: Dict[str, Any]):
        """Make `state` (from `state_dict()`, of a model and optimizer of the same shapes) the captured state, in
        this snapshot's own buffers (on its `device`).

        Raises:
            ValueError: when a tensor's shape or dtype, or the number of tensors or parameter groups, differs from
                this model's and optimizer's: the state is another model's.
        """
        names = self._tensor_names()
        saved = state["tensors"]
        if len(saved) != len(self._tensors):
            raise ValueError(
                f"The saved snapshot holds {len(saved)} parameters and buffers, this model {len(self._tensors)}: it "
                "was taken of another model."
            )
        for name, tensor, values in zip(names, self._tensors, saved):
            _check_like(values, _local(tensor), name)
        copies = self._tensor_copies or [None] * len(self._tensors)
        self._tensor_copies = [self._save(t, c, values) for t, c, values in zip(self._tensors, copies, saved)]
        params = self._optimizer_params()
        optimizer_state = {}
        for index, entries in state["optimizer_state"].items():
            if not 0 <= index < len(params):
                raise ValueError(f"The saved snapshot has optimizer state for parameter {index}, this optimizer "
                                 f"has {len(params)} parameters: it was taken of another optimizer.")
            param, live = params[index], self.optimizer.state.get(params[index], {})
            optimizer_state[param] = {}
            for key, value in entries.items():
                if isinstance(value, torch.Tensor):
                    # the live state tensor (restored with the checkpoint) says where and how the copy lives
                    like = live.get(key)
                    if not isinstance(like, torch.Tensor):
                        raise ValueError(f"The saved snapshot has optimizer state {key!r} for parameter {index}, "
                                         "which this optimizer does not hold: it was taken of another optimizer.")
                    _check_like(value, _local(like), f"optimizer state {key!r} of parameter {index}")
                    value = self._save(like, self._optimizer_state.get(param, {}).get(key), value)
                optimizer_state[param][key] = value
        if len(state["param_groups"]) != len(self.optimizer.param_groups):
            raise ValueError(f"The saved snapshot has {len(state['param_groups'])} parameter groups, this "
                             f"optimizer {len(self.optimizer.param_groups)}: it was taken of another optimizer.")
        self._optimizer_state = optimizer_state
        self._group_settings = [{key: _copy_value(value) for key, value in group.items()}
                                for group in state["param_groups"]]
        self._scaler_state = state["scaler"]
        self._synchronize()

    @torch.no_grad()
    def restore(self):
        if self._tensor_copies is None:
            raise RuntimeError("TrainingSnapshot.restore() called before capture().")
        for copy, tensor in zip(self._tensor_copies, self._tensors):
            _local(tensor).copy_(copy.values, non_blocking=True)
        state = self.optimizer.state
        for param in [p for p in state if p not in self._optimizer_state]:
            del state[param]  # state created lazily during a trial (e.g. Adam moments before the first update)
        for param, saved in self._optimizer_state.items():
            current = state.setdefault(param, {})
            for key, value in saved.items():
                target = current.get(key)
                if not isinstance(value, _TensorCopy):
                    current[key] = value
                elif isinstance(target, torch.Tensor) and _local(target).shape == value.values.shape:
                    _local(target).copy_(value.values, non_blocking=True)
                else:
                    current[key] = value.rebuild()
        for group, saved in zip(self.optimizer.param_groups, self._group_settings):
            for key, value in saved.items():
                if isinstance(group.get(key), torch.Tensor) and isinstance(value, torch.Tensor):
                    group[key].copy_(value)
                else:
                    group[key] = _copy_value(value)
        if self._scaler_state is not None:
            self.scaler.load_state_dict(self._scaler_state)
        self.optimizer.zero_grad(set_to_none=True)
        self._synchronize()


def _check_like(values: torch.Tensor, live: torch.Tensor, name: str):
    if values.shape != live.shape or values.dtype != live.dtype:
        raise ValueError(
            f"The saved snapshot's {name} is {tuple(values.shape)} {values.dtype}, this run's "
            f"{tuple(live.shape)} {live.dtype}: it was taken of another model, or under another sharding."
        )
