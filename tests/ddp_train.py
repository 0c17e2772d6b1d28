"""Run by test_distributed.py under `torchrun --nproc_per_node 2`: a Trainer run with LRTuner on CPU (gloo).

`python ddp_train.py <output_dir> [ddp|fsdp2] [checkpoint]`: DDP (the default), or FSDP2 through Trainer's `fsdp`
arguments with the snapshots in host memory (`snapshot_device="cpu"`); resumed from `checkpoint` if given. A
checkpoint every 3 updates. With `LRTUNER_KILL=<rank>:<update>` in the environment, that process SIGKILLs itself at
the end of that update, before the tuner sees it.
Each rank writes the LR it applied at every update, its race records and trial-update count to
`<output_dir>/rank<k>.json`, and its final weights (its shards under FSDP2) to `<output_dir>/weights<k>.pt`. As a
script, it finds `trainer_task` beside it (Python puts the script's directory first on `sys.path`).
"""

import json
import os
import signal
import sys

import torch
from transformers import TrainerCallback

from hf_lrtuner import LRTunerConfig, LRTunerTrainer
from trainer_task import CountTask, tiny_args, tiny_bert


class KillAt(TrainerCallback):
    """SIGKILL this process at the end of update `step` (before LRTunerCallback sees it) if it is process `rank`."""

    def __init__(self, spec):
        self.rank, self.step = map(int, spec.split(":")) if spec else (-1, -1)

    def on_step_end(self, args, state, control, **kwargs):
        if args.process_index == self.rank and state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class RecordAppliedLR(TrainerCallback):
    def __init__(self):
        self.lrs = []

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append(float(optimizer.param_groups[0]["lr"]))


def let_accelerate_run_fsdp_on_cpu():
    """Test-only patch. accelerate 1.15 turns FSDP on for accelerators only: on CPU it silently falls back to DDP and
    ignores the FSDP plugin, although FSDP2 itself runs on CPU with gloo. This makes its state FSDP, as it would be on
    GPUs, for the processes of this test."""
    import accelerate.state
    from accelerate.utils import DistributedType

    init = accelerate.state.AcceleratorState.__init__

    def fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
        init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            accelerate.state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    accelerate.state.AcceleratorState.__init__ = fsdp_on_cpu


def main(output_dir, mode="ddp", resume_from=None):
    resume_from = resume_from or None
    torch.set_num_threads(1)
    recorder = RecordAppliedLR()
    fsdp = {}
    if mode == "fsdp2":
        let_accelerate_run_fsdp_on_cpu()
        fsdp = dict(fsdp="full_shard", fsdp_config={"version": 2, "transformer_layer_cls_to_wrap": ["BertLayer"]})
    args = tiny_args(output_dir, max_steps=30, per_device_train_batch_size=8, ddp_backend="gloo", seed=3,
                      save_strategy="steps", save_steps=3, **fsdp)
    # Different data on each rank, so that only reduced values can make the decisions agree.
    trainer = LRTunerTrainer(
        model=tiny_bert(), args=args, train_dataset=CountTask(n=512, seed=0),
        callbacks=[recorder, KillAt(os.environ.get("LRTUNER_KILL"))],
        lrtuner_config=LRTunerConfig(race_horizon=5, race_margin=0.0, min_improvement=0.0,
                                     snapshot_device="cpu" if mode == "fsdp2" else None),
    )
    trainer.train(resume_from_checkpoint=resume_from)
    result = {"world_size": args.world_size, "lrs": recorder.lrs, "records": trainer.lr_scheduler.tuner.records,
              "trial_updates": trainer.lr_scheduler.tuner.trial_updates}
    local = list(trainer.model.parameters())
    if mode == "fsdp2":  # torch 2.6 and accelerate 1.6 or later (test_distributed.py skips it before)
        from torch.distributed.tensor import DTensor

        result["fsdp2"] = trainer.accelerator.is_fsdp2
        result["sharded"] = all(isinstance(p, DTensor) for p in local)
        local = [p.to_local() for p in local]
    torch.save([p.detach().clone() for p in local], os.path.join(output_dir, f"weights{args.process_index}.pt"))
    with open(os.path.join(output_dir, f"rank{args.process_index}.json"), "w") as f:
        json.dump(result, f)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
    # On a loaded machine a rank whose work is done (its file written, the group destroyed) sometimes aborts in
    # torch's C++ teardown at interpreter exit ("terminate called without an active exception", no Python frame).
    # Measured under a 2-core load: 7 of 52 runs without this exit, 0 of 16 with it. Nothing is left to do, so the
    # rank exits without that teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

