"""LRTuner in a plain PyTorch loop: a small MLP with Adam, started from an LR 10x too low.

Run: python examples/plain_pytorch.py
"""

import torch
from torch.utils.data import DataLoader, TensorDataset

from hf_lrtuner import LRTunerConfig, LRTunerScheduler, TrialRunner


def main(steps=300, lr=1e-3):
    torch.manual_seed(0)
    x = torch.randn(2048, 10)
    teacher = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))
    with torch.no_grad():
        y = teacher(x).argmax(-1)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)

    model = torch.nn.Sequential(torch.nn.Linear(10, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    config = LRTunerConfig(tune_every=30, trial_steps=5, probe_batches=4, max_trial_fraction=0.5)
    scheduler = LRTunerScheduler(optimizer, num_training_steps=steps, config=config)

    def loss_fn(batch):
        inputs, labels = batch
        return torch.nn.functional.cross_entropy(model(inputs), labels)

    def train_step(batch):
        loss = loss_fn(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        return loss.detach()

    runner = TrialRunner(model, optimizer, scheduler, train_step, loss_fn, batches=loader)
    batches = iter(loader)
    for step in range(steps):
        record = runner.maybe_tune()
        if record is not None:
            print(f"step {step:3d} {record['phase']:8s} LR -> {scheduler.get_last_lr()[0]:.4g}")
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        loss = train_step(batch)
        scheduler.step()
        runner.check_loss(loss)
    with torch.no_grad():
        final = loss_fn((x, y)).item()
    tuner = scheduler.tuner
    print(f"final loss {final:.4f}; {steps} updates + {tuner.trial_updates} trial updates")
    return final


if __name__ == "__main__":
    main()
