"""Peak memory of training with and without LRTuner: what the races' two snapshots cost.

Each configuration runs in a fresh process (peak RSS is a high-water mark of the whole process): a question-answering
model trained with AdamW (fp32) on a fixed synthetic batch in a plain PyTorch loop, for `--updates` updates, either
without LRTuner or with `TrialRunner` whose first race ends within the run (so both of its snapshots, the race's
start and the leading branch, are allocated). One CSV row per model and `snapshot_device`:

- `peak_rss_without_mb`, `peak_rss_with_mb`: peak resident memory of the process (`ru_maxrss`), MB;
- `snapshot_bytes`: the bytes both snapshots hold (`TrainingSnapshot.nbytes`), and per parameter;
- `extra_bytes_per_param`: the measured RSS difference per parameter;
- on CUDA (`--device cuda`) also `cuda_peak_without_mb`, `cuda_peak_with_mb` (`torch.cuda.max_memory_allocated`).

glibc keeps freed memory mapped unless told otherwise, which would hide what is freed again; children run with
`MALLOC_MMAP_THRESHOLD_=131072 MALLOC_TRIM_THRESHOLD_=131072` so that RSS follows allocations.

    python -m benchmarks.memory --csv docs/results/memory.csv
"""

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

MODELS = ("tiny_bert", "minilm")
MB = 1e6
FIELDS = ["model", "params", "device", "snapshot_device", "peak_rss_without_mb", "peak_rss_with_mb", "extra_rss_mb",
          "snapshot_bytes", "snapshot_bytes_per_param", "extra_bytes_per_param", "cuda_peak_without_mb",
          "cuda_peak_with_mb"]


def build_model(name: str):
    """The model and the sequence length of its synthetic batch."""
    if name == "tiny_bert":  # the tests' tiny random BERT (tests/trainer_task.py), with a QA head
        from transformers import BertConfig, BertForQuestionAnswering

        config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=64)
        return BertForQuestionAnswering(config), 64
    from benchmarks.task_minilm import model_dir
    from transformers import AutoModelForQuestionAnswering

    return AutoModelForQuestionAnswering.from_pretrained(model_dir()), 128


def measure(name: str, tuner: bool, snapshot_device, device: str, updates: int, batch_size: int) -> dict:
    """Train `name` for `updates` updates in this process; its peak memory and the snapshots' size."""
    import torch

    from hf_lrtuner import LRTunerConfig, LRTunerScheduler, TrialRunner

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model, length = build_model(name)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    vocab = model.config.vocab_size
    batch = {"input_ids": torch.randint(0, vocab, (batch_size, length), device=device),
             "start_positions": torch.randint(0, length, (batch_size,), device=device),
             "end_positions": torch.randint(0, length, (batch_size,), device=device)}

    def train_step(batch):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    runner = None
    if tuner:  # one race (a challenger each way) that ends within the run
        config = LRTunerConfig(race_horizon=4, down_horizon=2, max_races=1, snapshot_device=snapshot_device)
        scheduler = LRTunerScheduler(optimizer, updates, config)
        runner = TrialRunner(model, optimizer, scheduler, train_step)
    for _ in range(updates):
        loss = train_step(batch)
        if runner is not None:
            scheduler.step()
            runner.after_update(batch, loss)
    if runner is not None and not runner.tuner.records:
        raise RuntimeError(f"the race did not end within {updates} updates: pass more --updates")
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux reports KiB
        "snapshot_bytes": runner.safe_point.nbytes + runner.leader.nbytes if runner is not None else 0,
        "cuda_peak": torch.cuda.max_memory_allocated() if device.startswith("cuda") else None,
    }


def run_child(name: str, tuner: bool, snapshot_device: str, args) -> dict:
    """`measure` in a fresh process, with glibc returning freed memory at once (`snapshot_device`: "none" or a
    device)."""
    command = [sys.executable, "-m", "benchmarks.memory", "--child", name, str(int(tuner)), snapshot_device,
               "--device", args.device, "--updates", str(args.updates), "--batch_size", str(args.batch_size)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072",
           "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False, cwd=REPO_ROOT)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def mb(value):
    return "" if value is None else round(value / MB, 1)


def markdown_table(rows) -> str:
    """The docs' memory table (docs/results.md, "Memory") from the CSV's rows."""
    lines = ["| model | parameters | `snapshot_device` | peak RSS without LRTuner | with LRTuner | difference | "
             "per parameter | the snapshots' bytes per parameter |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        where = "`None` (training device)" if row["snapshot_device"] == "none" else f'`"{row["snapshot_device"]}"`'
        lines.append(f"| {row['model']} | {int(row['params']):,} | {where} | {row['peak_rss_without_mb']} MB | "
                     f"{row['peak_rss_with_mb']} MB | +{row['extra_rss_mb']} MB | {row['extra_bytes_per_param']} B | "
                     f"{row['snapshot_bytes_per_param']} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog=f"python -m {__spec__.name}", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--snapshot_devices", nargs="+", default=["none", "cpu"],
                        help="LRTunerConfig.snapshot_device values to measure ('none': the training device)")
    parser.add_argument("--device", default="cpu", help="training device: cpu or cuda")
    parser.add_argument("--updates", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--csv", default="memory.csv")
    parser.add_argument("--table", action="store_true", help="print the markdown table of --csv and exit")
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "TUNER", "SNAPSHOT_DEVICE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        name, tuner, snapshot_device = args.child
        snapshot_device = None if snapshot_device == "none" else snapshot_device
        print(json.dumps(measure(name, tuner == "1", snapshot_device, args.device, args.updates, args.batch_size)))
        return
    if args.table:
        with open(args.csv, newline="") as f:
            print(markdown_table(list(csv.DictReader(f))))
        return
    rows = []
    for name in args.models:
        without = run_child(name, False, "none", args)
        for snapshot_device in args.snapshot_devices:
            with_tuner = run_child(name, True, snapshot_device, args)
            params, extra = with_tuner["params"], with_tuner["peak_rss"] - without["peak_rss"]
            rows.append({
                "model": name, "params": params, "device": args.device, "snapshot_device": snapshot_device,
                "peak_rss_without_mb": mb(without["peak_rss"]), "peak_rss_with_mb": mb(with_tuner["peak_rss"]),
                "extra_rss_mb": mb(extra), "snapshot_bytes": with_tuner["snapshot_bytes"],
                "snapshot_bytes_per_param": round(with_tuner["snapshot_bytes"] / params, 2),
                "extra_bytes_per_param": round(extra / params, 2),
                "cuda_peak_without_mb": mb(without["cuda_peak"]), "cuda_peak_with_mb": mb(with_tuner["cuda_peak"]),
            })
            print(rows[-1], flush=True)
    Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
    with open(args.csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {args.csv}")
    print(markdown_table([{k: str(v) for k, v in row.items()} for row in rows]))


if __name__ == "__main__":
    main()
