"""Run by test_distributed.py under `torchrun --nproc_per_node 2`: LRTuner in a plain accelerate loop on CPU (gloo).

`python accelerate_train.py <output_dir> <mode>`, with mode
- `prepared`: the scheduler goes through `accelerator.prepare` (its wrapper steps it once per process per update);
- `stepped_wrapper`: as `prepared`, but TrialRunner gets the LRTunerScheduler while the loop steps the wrapper;
- `once`: `Accelerator(step_scheduler_with_optimizer=False)`, whose wrapper steps it once per call.
Each rank writes `<output_dir>/rank<k>.json`: the error TrialRunner raised, or the LR of every update, the
scheduler's step count and the tuner's records.
"""

import json
import os
import sys

import torch
from accelerate import Accelerator

from hf_lrtuner import LRTunerConfig, LRTunerScheduler, TrialRunner
from task import classification_data, mlp_model

UPDATES = 40


def main(output_dir, mode):
    torch.set_num_threads(1)
    accelerator = Accelerator(cpu=True, step_scheduler_with_optimizer=mode != "once")
    data = classification_data(n=UPDATES * 16, seed=accelerator.process_index)  # different data on each rank
    batches = [data[k * 16:(k + 1) * 16] for k in range(UPDATES)]
    model = mlp_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)  # a low guess: the races raise it
    scheduler = LRTunerScheduler(optimizer, UPDATES, LRTunerConfig(race_horizon=5, race_margin=0.0,
                                                                     min_improvement=0.0))
    model, optimizer, prepared = accelerator.prepare(model, optimizer, scheduler)

    def train_step(batch):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(model(x), y)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        return loss

    def mean_over_processes(values):
        return accelerator.reduce(torch.tensor(values, dtype=torch.float64), reduction="mean").tolist()

    result = {"world_size": accelerator.num_processes}
    try:
        runner = TrialRunner(model, optimizer, scheduler if mode == "stepped_wrapper" else prepared, train_step,
                             reduce_scores=mean_over_processes)
        lrs = []
        for batch in batches:
            lrs.append(optimizer.param_groups[0]["lr"])
            loss = train_step(batch)
            prepared.step()
            runner.after_update(batch, loss)
        result.update(lrs=lrs, last_epoch=scheduler.last_epoch, records=scheduler.tuner.records)
    except (ValueError, RuntimeError) as error:
        result["error"] = f"{type(error).__name__}: {error}"
    with open(os.path.join(output_dir, f"rank{accelerator.process_index}.json"), "w") as f:
        json.dump(result, f)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(*sys.argv[1:])
    sys.stdout.flush()
    # Once all work is done and written, gloo's teardown sometimes aborts (torch 2.13: "terminate called without an
    # active exception") or hangs in destroy_process_group (torch 2.4: 1 of 6 runs); skipping it keeps that out of the
    # test's verdict
    os._exit(0)
