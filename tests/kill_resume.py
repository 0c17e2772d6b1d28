"""Kill a Trainer run with LRTuner at random moments, resume it from its last complete checkpoint until it ends, and
check that it is the uninterrupted run, bit for bit.

The run (a tiny BERT on a counting task, `tests/trainer_task.py`, on CPU) saves a checkpoint every `--save_steps`
updates and races from its start; `--rollback_at` makes it roll back once, as a failed validation check would
(`TrialRunner.roll_back()`). An uninterrupted run first lists the moments a kill can hit: inside an update (after its
optimizer step, before the tuner sees it), between updates, inside a challenger's replay, inside a roll-back (after
the restore, before the tuner lowers the LR), and while a checkpoint is being written (after Trainer's files, before
LRTuner's race file is renamed into place, before its manifest, in the middle of `trainer_state.json`). Each
schedule then kills the run (SIGKILL, from inside the process at the chosen moment, or from outside after a random
delay with `--timed`) `--kills` times, each time at a moment after the checkpoint it resumed from, and resumes it
with `resume_from_checkpoint=last_complete_checkpoint(output_dir)`. Compared with the uninterrupted run: the LR of
every update (every attempt's, including those of killed attempts), the tuner's records, its trial-update count and
multiplier, Trainer's log history (losses, gradient norms, LRs, `lrtuner/*` logs) and the final weights.

    python tests/kill_resume.py --schedules 10 --kills 6 --seed 0 --timed 0.3

Prints one line per schedule and a summary; exits 1 when a resumed run differs. `--child` runs one attempt (used by
the harness).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

REPO_ROOT = Path(__file__).resolve().parent.parent
SETTINGS = dict(max_steps=30, save_steps=3, rollback_at=22)
SAVE_PHASES = ("trainer_files", "race_file", "manifest", "trainer_state")


# ------------------------------------------------------------------------------------------- one attempt (child)
class KillPoints:
    """The moments of a run a kill can hit, named `kind:step[:detail]`: records them (`trace`) or SIGKILLs the
    process at one of them (`kill`)."""

    def __init__(self, trace_path: Optional[str], kill: Optional[str]):
        self.trace_path, self.kill = trace_path, kill

    def reached(self, *name):
        point = ":".join(map(str, name))
        if self.trace_path is not None:
            with open(self.trace_path, "a") as file:
                file.write(point + "\n")
        if point == self.kill:
            os.kill(os.getpid(), signal.SIGKILL)


def child(output_dir: str, max_steps: int, save_steps: int, rollback_at: int, kill: Optional[str],
          trace: Optional[str], resume: Optional[str]):
    import torch
    from transformers import TrainerCallback, TrainerState

    import hf_lrtuner._trainer_internals as internals
    from hf_lrtuner import LRTunerCallback, LRTunerConfig, LRTunerTrainer, checkpoint
    from hf_lrtuner.tuner import LRTuner
    from trainer_task import CountTask, tiny_args, tiny_bert

    torch.set_num_threads(1)
    points = KillPoints(trace, kill)
    lr_log = os.open(os.path.join(output_dir, "lrs.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    class Moments(TrainerCallback):  # before LRTunerCallback: sees an update before the tuner does
        def on_step_begin(self, args, state, control, **kwargs):
            points.reached("between", state.global_step)

        def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
            os.write(lr_log, f"{state.global_step + 1} {float(optimizer.param_groups[0]['lr'])!r}\n".encode())

        def on_step_end(self, args, state, control, **kwargs):
            points.reached("update", state.global_step)

    class ValidationCheck(TrainerCallback):  # after LRTunerCallback: a check that fails once rolls the run back
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == rollback_at:
                tuner_callback = next(c for c in trainer.callback_handler.callbacks if isinstance(c, LRTunerCallback))
                tuner_callback.runner.roll_back()

    replay_update, back_off = internals.replay_update, LRTuner.back_off
    replays = {}

    def counted_replay(trainer, *args):
        step = trainer.state.global_step
        replays[step] = replays.get(step, -1) + 1
        points.reached("replay", step, replays[step])
        return replay_update(trainer, *args)

    def interrupted_back_off(tuner, step):
        points.reached("rollback", step)
        return back_off(tuner, step)

    save_race_state, replace = checkpoint.save_race_state, checkpoint._replace_atomically
    save_to_json = TrainerState.save_to_json

    def saving_race_state(folder, *args, **kwargs):
        points.reached("save", trainer.state.global_step, "trainer_files")
        save_race_state(folder, *args, **kwargs)

    def replacing(temporary, path):
        phase = "manifest" if path.endswith(".json") else "race_file"
        points.reached("save", trainer.state.global_step, phase)
        replace(temporary, path)

    def saving_state(state, json_path):
        if points.kill == f"save:{state.global_step}:trainer_state":
            text = json.dumps(state.log_history)
            with open(json_path, "w") as file:  # cut short in the middle, as a kill would
                file.write(text[: len(text) // 2])
        points.reached("save", state.global_step, "trainer_state")
        save_to_json(state, json_path)

    internals.replay_update, LRTuner.back_off = counted_replay, interrupted_back_off
    checkpoint.save_race_state, checkpoint._replace_atomically = saving_race_state, replacing
    TrainerState.save_to_json = saving_state

    args = tiny_args(output_dir, max_steps=max_steps, learning_rate=1e-3, seed=1, save_strategy="steps",
                     save_steps=save_steps, logging_steps=1)
    config = LRTunerConfig(race_horizon=5, race_margin=0.0, min_improvement=0.0, race_factor=4.0, race_until=1.0)
    trainer = LRTunerTrainer(model=tiny_bert(), args=args, train_dataset=CountTask(), callbacks=[Moments()],
                             lrtuner_config=config)
    trainer.add_callback(ValidationCheck())
    trainer.train(resume_from_checkpoint=resume)
    tuner = trainer.lr_scheduler.tuner
    untimed = [{k: v for k, v in entry.items() if not k.startswith("train_") and k != "total_flos"}
               for entry in trainer.state.log_history]
    result = {"records": tuner.records, "trial_updates": tuner.trial_updates, "multiplier": tuner.multiplier,
              "rollbacks": tuner.rollbacks, "log_history": untimed}
    torch.save(trainer.model.state_dict(), os.path.join(output_dir, "final_weights.pt"))
    with open(os.path.join(output_dir, "result.json"), "w") as file:
        json.dump(result, file)


# ------------------------------------------------------------------------------------------- the harness
def run_attempt(output_dir: Path, settings: dict, kill: Optional[str] = None, resume: Optional[str] = None,
                trace: Optional[Path] = None, kill_after: Optional[float] = None, timeout: float = 600) -> int:
    """One attempt of the run as a subprocess; returns its exit code (-9: killed)."""
    command = [sys.executable, __file__, "--child", str(output_dir), "--kill", kill or "",
               "--resume", resume or "", "--trace", str(trace or ""),
               *[f"--{key}={value}" for key, value in settings.items()]]
    path = os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "TRANSFORMERS_VERBOSITY": "error"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = process.communicate(timeout=kill_after if kill_after is not None else timeout)
    except subprocess.TimeoutExpired:
        if kill_after is None:
            process.kill()
            raise
        process.send_signal(signal.SIGKILL)
        _, stderr = process.communicate()
    if process.returncode not in (0, -signal.SIGKILL):
        raise RuntimeError(f"attempt failed with exit code {process.returncode}:\n{stderr[-3000:]}")
    return process.returncode


def reference_run(directory: Path, settings: dict) -> List[str]:
    """The uninterrupted run in `directory`; returns the moments a kill can hit, in the order they happen."""
    directory.mkdir(parents=True, exist_ok=True)
    trace = directory / "trace.log"
    assert run_attempt(directory, settings, trace=trace) == 0
    return trace.read_text().split()


def _reachable(point: str, resumed_at: int) -> bool:
    """Whether a run resumed from checkpoint `resumed_at` passes `point` again."""
    kind, step = point.split(":")[:2]
    return int(step) > resumed_at or (kind == "between" and int(step) == resumed_at)


def categories(points: List[str], records: List[dict]) -> dict:
    """`points` by what a kill there interrupts: an update or the gap between two inside a race (from its start to
    its decision) or outside races, a challenger's replay, a roll-back, a checkpoint being written."""
    races = [range(r["step"], r["end_step"]) for r in records if "end_step" in r]
    grouped = {"in_race": [], "between_races": [], "replay": [], "rollback": [], "save": []}
    for point in points:
        kind, step = point.split(":")[:2]
        if kind in ("update", "between"):
            inside = any(int(step) - (kind == "update") in race for race in races)
            kind = "in_race" if inside else "between_races"
        grouped[kind].append(point)
    return grouped


def kill_and_resume(directory: Path, points: dict, settings: dict, kills: int, rng: random.Random,
                    timed_share: float = 0.0, max_delay: float = 10.0, plan: Optional[List[str]] = None) -> List[tuple]:
    """Run to the end in `directory`, killed `kills` times: each at a moment after the checkpoint the attempt resumes
    from, of a category of `points` (see `categories`; the `plan`'s, in order, where it has one left) drawn at random,
    or (with probability `timed_share`) from outside after a random delay up to `max_delay` seconds. Returns
    `(category, moment, resumed from)` per kill."""
    from hf_lrtuner.checkpoint import last_complete_checkpoint

    directory.mkdir(parents=True, exist_ok=True)
    resume, killed = None, []
    for kill in range(kills):
        resumed_at = int(resume.rsplit("-", 1)[1]) if resume else -1
        reachable = {kind: [p for p in group if _reachable(p, resumed_at)] for kind, group in points.items()}
        reachable = {kind: group for kind, group in reachable.items() if group}
        if rng.random() < timed_share or not reachable:
            category, delay = "timed", rng.uniform(0.5, max_delay)
            code = run_attempt(directory, settings, resume=resume, kill_after=delay)
            moment = f"after {delay:.1f} s"
        else:
            planned = plan[kill] if plan and kill < len(plan) else None
            category = planned if planned in reachable else rng.choice(sorted(reachable))
            moment = rng.choice(reachable[category])
            code = run_attempt(directory, settings, kill=moment, resume=resume)
        if code == 0:  # a timed kill that came after the end
            break
        killed.append((category, moment, os.path.basename(resume) if resume else "start"))
        resume = last_complete_checkpoint(str(directory))
    assert run_attempt(directory, settings, resume=resume) == 0
    return killed


def differences(reference: Path, run: Path) -> List[str]:
    """What differs between the uninterrupted run in `reference` and the killed-and-resumed one in `run`."""
    import torch

    found = []
    expected = dict(line.split() for line in (reference / "lrs.log").read_text().splitlines())
    seen = [line.split() for line in (run / "lrs.log").read_text().splitlines()]
    wrong = sorted({int(step) for step, lr in seen if expected.get(step) != lr})
    if wrong:
        found.append(f"LRs of updates {wrong}")
    if {step for step, _ in seen} != set(expected):
        found.append("updates missing from the LR log")
    ours, theirs = (json.loads((d / "result.json").read_text()) for d in (reference, run))
    found += [key for key in ours if ours[key] != theirs[key]]
    weights = [torch.load(d / "final_weights.pt", weights_only=True) for d in (reference, run)]
    if any(not torch.equal(weights[0][name], weights[1][name]) for name in weights[0]):
        found.append("final weights")
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", type=int, default=5, help="kill schedules (each a full run)")
    parser.add_argument("--kills", type=int, default=5, help="kills per schedule")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timed", type=float, default=0.0, help="share of kills sent from outside after a delay")
    parser.add_argument("--workdir", default=None, help="where the runs go (default: a temporary directory)")
    for key, value in SETTINGS.items():
        parser.add_argument(f"--{key}", type=int, default=value)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--kill", default="", help=argparse.SUPPRESS)
    parser.add_argument("--resume", default="", help=argparse.SUPPRESS)
    parser.add_argument("--trace", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    settings = {key: getattr(args, key) for key in SETTINGS}
    if args.child:
        child(args.child, **settings, kill=args.kill or None, trace=args.trace or None, resume=args.resume or None)
        return
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="kill_resume_"))
    start = time.time()
    moments = reference_run(workdir / "reference", settings)
    records = json.loads((workdir / "reference" / "result.json").read_text())["records"]
    points = categories(moments, records)
    rng, identical, kills = random.Random(args.seed), 0, 0
    for schedule in range(args.schedules):
        killed = kill_and_resume(workdir / f"schedule{schedule}", points, settings, args.kills, rng, args.timed)
        found = differences(workdir / "reference", workdir / f"schedule{schedule}")
        identical += not found
        kills += len(killed)
        print(f"schedule {schedule}: {len(killed)} kills, {'identical' if not found else 'DIFFERS: ' + ', '.join(found)}"
              "; killed " + "; ".join(f"{category} at {moment} (from {start})" for category, moment, start in killed),
              flush=True)
    print(f"{args.schedules} schedules, {kills} kills survived, {identical} of {args.schedules} runs identical to the "
          f"uninterrupted run ({len(moments)} kill moments in a run of {args.max_steps} updates), "
          f"{time.time() - start:.0f} s")
    sys.exit(0 if identical == args.schedules else 1)


if __name__ == "__main__":
    main()
