"""LRTuner in a plain PyTorch loop: a small MLP with Adam, started from an LR 10x too low.

The schedule is Trainer's `linear` (warmup, then linear decay to zero) times a multiplier of the initial LR that races
decide: at a race's start the runner snapshots the training state, the run trains `race_horizon` updates at the
current multiplier, then one factor down and one up replay the same batches from the snapshot, and the best (by a
margin) continues.

Run: python examples/plain_pytorch.py
"""

import torch
from torch.utils.data import DataLoader, TensorDataset

from hf_lrtuner import LRTunerConfig, LRTunerScheduler, TrialRunner
from hf_lrtuner.records import is_race


def main(steps=300, lr=1e-3):
    torch.manual_seed(0)
    x = torch.randn(2048, 10)
    teacher = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))
    with torch.no_grad():
        y = teacher(x).argmax(-1)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)

    model = torch.nn.Sequential(torch.nn.Linear(10, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    # Races of 15 updates: the default (a share of the budget, at least 20 updates) suits longer runs.
    config = LRTunerConfig(warmup_steps=steps // 10, race_horizon=15)
    scheduler = LRTunerScheduler(optimizer, num_training_steps=steps, config=config)

    def train_step(batch):  # one full update; the runner replays challengers through it too
        inputs, labels = batch
        loss = torch.nn.functional.cross_entropy(model(inputs), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        return loss.detach()

    runner = TrialRunner(model, optimizer, scheduler, train_step)
    batches = iter(loader)
    for _ in range(steps):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        loss = train_step(batch)
        scheduler.step()
        record = runner.after_update(batch, loss)  # races and roll-backs; None most of the time
        if record is not None and is_race(record):
            arms = ", ".join(f"{m:g}: {score:.3f}" for m, score in zip(record["multipliers"], record["scores"]))
            print(f"race {record['step']:3d}-{record['end_step']:3d} (multiplier: late-race loss) {arms} "
                  f"-> multiplier {record['multiplier']:g}")
        elif record is not None:
            print(f"diverged at {record['step']}: rolled back to {record['rollback_to']}, "
                  f"multiplier {record['multiplier']:g}")
    with torch.no_grad():
        final = torch.nn.functional.cross_entropy(model(x), y).item()
    tuner = scheduler.tuner
    print(f"final loss {final:.4f}; multiplier {tuner.multiplier:g} (peak LR {tuner.multiplier * lr:.3g}); "
          f"{steps} updates + {tuner.trial_updates} trial updates")
    return final


if __name__ == "__main__":
    main()
