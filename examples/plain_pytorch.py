"""LRTuner in a plain PyTorch loop: a small MLP with Adam, started from an LR 10x too low.

The task: Gaussian inputs labelled by a random "teacher" MLP, learnt by a "student" MLP (the tests use both MLPs).

The schedule is Trainer's `linear` (warmup, then linear decay to zero) times a multiplier of the initial LR that races
decide: at a race's start the runner snapshots the training state, the run trains `race_horizon` updates at the
current multiplier, then one factor down and one up replay the same batches from the snapshot, and the best (by a
margin) continues; after a won race the next one goes further the same way (x4, then x16).

Run: python examples/plain_pytorch.py
"""

import torch
from torch.utils.data import DataLoader, TensorDataset

from hf_lrtuner import LRTunerConfig, LRTunerScheduler, TrialRunner
from hf_lrtuner.records import is_race


def teacher_mlp(dim=10, classes=4):
    """The random "teacher" whose argmax labels the toy task: an MLP with one tanh layer of 32."""
    return torch.nn.Sequential(torch.nn.Linear(dim, 32), torch.nn.Tanh(), torch.nn.Linear(32, classes))


def student_mlp(dim=10, classes=4):
    """The model that learns the teacher's labels: an MLP with one ReLU layer of 64."""
    return torch.nn.Sequential(torch.nn.Linear(dim, 64), torch.nn.ReLU(), torch.nn.Linear(64, classes))


def teacher_data(n=2048, dim=10, classes=4, seed=0):
    """The toy task: inputs drawn from N(0, I), labelled by a `teacher_mlp` with its default initialisation.

    Seeds torch's global RNG with `seed`, then draws the inputs and the teacher from it.

    Args:
        n (`int`, *optional*, defaults to 2048): Number of examples.
        dim (`int`, *optional*, defaults to 10): Input dimension.
        classes (`int`, *optional*, defaults to 4): Number of classes.
        seed (`int`, *optional*, defaults to 0): Seed of the inputs and of the teacher.

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`: Inputs of shape `(n, dim)` and their labels, of shape `(n,)`.
    """
    torch.manual_seed(seed)
    x = torch.randn(n, dim)
    with torch.no_grad():
        y = teacher_mlp(dim, classes)(x).argmax(-1)
    return x, y


def main(steps=300, lr=1e-3):
    x, y = teacher_data(seed=0)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)

    model = student_mlp()
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
