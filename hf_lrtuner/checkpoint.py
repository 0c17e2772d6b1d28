"""The tuner's race state in checkpoints: written atomically with a checksum, beside Trainer's files.

The scheduler's `state_dict()` (Trainer's `scheduler.pt`) holds every decision of the tuner; what a run resumed inside
a race, or one that must later roll back, needs beyond it is the [`TrialRunner`]'s state: the snapshot of the training
state the race replays from (or a divergence returns to), the race's batches, the real run's losses over them and the
race's random-number state. [`LRTunerCallback`] saves it in `checkpoint-N/` as one file per process,
`lrtuner_rank{r}_of_{w}.pt`, with a manifest `lrtuner_rank{r}_of_{w}.json` (its size, SHA-256, step and the
fingerprint of the tuner state it belongs to) written after it: a file whose manifest is missing or does not match is
refused, never loaded as a good one. Under DDP the snapshot is the same on every process and only process 0 saves it;
under FSDP2 each process saves its own shards.

A plain PyTorch loop can use [`save_checkpoint_file`] and [`load_checkpoint_file`] for its own checkpoints (see
[`TrialRunner`] for what it must save).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from typing import Any, Optional, Tuple

import torch

PREFIX = "lrtuner"
SCHEDULER_FILE = "scheduler.pt"  # Trainer's name for the scheduler's state_dict()
_CHUNK = 1 << 24


class CheckpointError(ValueError):
    """A checkpoint that cannot continue the run: incomplete, corrupted, or saved by another run or setup."""


class _HashingWriter:
    """A binary file that computes the SHA-256 of what is written to it (torch.save writes sequentially)."""

    def __init__(self, file):
        self.file, self.digest, self.size = file, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.file.write(data)

    def flush(self):
        self.file.flush()


def _replace_atomically(temporary: str, path: str):
    os.replace(temporary, path)
    directory = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash of the machine, not only of the process
    finally:
        os.close(directory)


def manifest_path(path: str) -> str:
    return os.path.splitext(path)[0] + ".json"


def save_checkpoint_file(obj: Any, path: str, metadata: Optional[dict] = None):
    """`torch.save(obj, path)`, atomically: `path` and then its manifest (`.json` beside it: size, SHA-256 and
    `metadata`) are each written to a temporary file and renamed into place, so a process killed while saving leaves
    either no manifest or the previous complete pair.

    Args:
        obj (`Any`): tensors and plain Python types (what `torch.load(weights_only=True)` reads back).
        path (`str`): the file to write.
        metadata (`dict`, *optional*): JSON-serializable facts to check when loading (a step, a world size).
    """
    temporary = f"{path}.tmp"
    with open(temporary, "wb") as file:
        writer = _HashingWriter(file)
        torch.save(obj, writer)
        file.flush()
        os.fsync(file.fileno())
    _replace_atomically(temporary, path)
    manifest = {"file": os.path.basename(path), "bytes": writer.size, "sha256": writer.digest.hexdigest(),
                **(metadata or {})}
    with open(f"{manifest_path(path)}.tmp", "w") as file:
        json.dump(manifest, file)
        file.flush()
        os.fsync(file.fileno())
    _replace_atomically(f"{manifest_path(path)}.tmp", manifest_path(path))


def read_manifest(path: str) -> dict:
    """The manifest of `path` written by [`save_checkpoint_file`]."""
    try:
        with open(manifest_path(path)) as file:
            return json.load(file)
    except FileNotFoundError:
        raise CheckpointError(
            f"{path} has no manifest ({os.path.basename(manifest_path(path))}): the process was stopped while saving "
            "it. Resume from an earlier checkpoint (hf_lrtuner.checkpoint.last_complete_checkpoint(output_dir))."
        ) from None
    except json.JSONDecodeError as error:
        raise CheckpointError(f"The manifest of {path} is corrupted ({error}).") from None


def load_checkpoint_file(path: str) -> Tuple[Any, dict]:
    """Read a file written by [`save_checkpoint_file`] after checking its size and SHA-256 against its manifest.

    Args:
        path (`str`): the file.

    Returns:
        `Tuple[Any, dict]`: the object (tensors on the CPU), and the manifest.

    Raises:
        CheckpointError: the manifest is missing (the save was interrupted), or the file does not match it
            (truncated or corrupted).
    """
    manifest = read_manifest(path)
    digest, size = hashlib.sha256(), 0
    try:
        with open(path, "rb") as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing, although its manifest is there.") from None
    if size != manifest["bytes"] or digest.hexdigest() != manifest["sha256"]:
        raise CheckpointError(
            f"{path} is corrupted: {size} bytes with SHA-256 {digest.hexdigest()[:12]}..., where its manifest says "
            f"{manifest['bytes']} bytes, {manifest['sha256'][:12]}... Resume from an earlier checkpoint."
        )
    return torch.load(path, map_location="cpu", weights_only=True), manifest


def tuner_fingerprint(scheduler_state: dict) -> str:
    """SHA-256 of a scheduler `state_dict()`'s tuner state, where snapshots live left out (the machine's choice, not
    the run's): ties a race-state file to the `scheduler.pt` it was saved with."""
    tuner = dict(scheduler_state["tuner"] or {})
    if "config" in tuner:
        tuner["config"] = {k: v for k, v in tuner["config"].items() if k != "snapshot_device"}
    return hashlib.sha256(json.dumps(tuner, sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------------------------------- Trainer checkpoints
def race_state_path(checkpoint: str, rank: int, world_size: int) -> str:
    return os.path.join(checkpoint, f"{PREFIX}_rank{rank}_of_{world_size}.pt")


def save_race_state(checkpoint: str, runner, rank: int, world_size: int, sharded: bool):
    """Save `runner`'s state for process `rank` of `world_size` in `checkpoint` (see the module's docstring)."""
    owns_snapshot = sharded or rank == 0
    os.makedirs(checkpoint, exist_ok=True)  # under DDP only process 0 saves Trainer's files: it may not be there yet
    metadata = {"step": runner.step, "rank": rank, "world_size": world_size, "sharded": sharded,
                "tuner": tuner_fingerprint(runner.scheduler.state_dict())}
    save_checkpoint_file(runner.state_dict(include_snapshot=owns_snapshot), race_state_path(checkpoint, rank,
                                                                                             world_size), metadata)


def load_race_state(checkpoint: str, scheduler_state: dict, rank: int, world_size: int,
                    sharded: bool) -> Optional[dict]:
    """The [`TrialRunner`] state of process `rank` saved in `checkpoint` with `scheduler_state` (its `scheduler.pt`).

    Returns `None` for a checkpoint of hf_lrtuner 0.2 or 0.3, which saved no race state.

    Raises:
        CheckpointError: the checkpoint is incomplete (stopped while saving), corrupted, saved by another number of
            processes or under another sharding, or its race state belongs to another scheduler state.
    """
    name = os.path.basename(os.path.normpath(checkpoint))
    saved = sorted(glob.glob(os.path.join(checkpoint, f"{PREFIX}_rank*_of_*.json")))
    if not saved:
        if "format" not in scheduler_state:
            return None  # 0.2/0.3
        raise CheckpointError(
            f"{name} holds no LRTuner race state ({os.path.basename(race_state_path(checkpoint, rank, world_size))}"
            "): the run was stopped while saving it. Resume from the last complete checkpoint: "
            "hf_lrtuner.checkpoint.last_complete_checkpoint(output_dir)."
        )
    sizes = {int(re.search(r"_of_(\d+)\.json$", path).group(1)) for path in saved}
    if sizes != {world_size}:
        raise CheckpointError(
            f"{name} was saved by {'/'.join(map(str, sorted(sizes)))} processes, this run has {world_size}. The "
            "LRTuner state is per process (each process's race batches and random numbers, its shards under FSDP2), "
            f"so the run can only continue with {max(sizes)} processes."
        )
    state, manifest = load_checkpoint_file(race_state_path(checkpoint, rank, world_size))
    if manifest["sharded"] != sharded:
        raise CheckpointError(
            f"{name} was saved {'with' if manifest['sharded'] else 'without'} FSDP2 sharding and this run is "
            f"{'' if sharded else 'not '}sharded: the snapshot's tensors do not fit. Resume under the same setup."
        )
    if manifest["tuner"] != tuner_fingerprint(scheduler_state) or manifest["rank"] != rank:
        raise CheckpointError(
            f"{name}: the LRTuner state in scheduler.pt does not match the race state saved with it "
            f"({os.path.basename(race_state_path(checkpoint, rank, world_size))}): scheduler.pt is corrupted, or the "
            "files come from different checkpoints."
        )
    if state["snapshot"] is None:  # DDP: process 0 saved the one snapshot every process holds
        state["snapshot"] = load_checkpoint_file(race_state_path(checkpoint, 0, world_size))[0]["snapshot"]
    return state


def read_scheduler_file(checkpoint: str) -> dict:
    """`torch.load(weights_only=True)` of Trainer's `scheduler.pt` in `checkpoint`, or a `CheckpointError` that says
    it is missing or damaged."""
    path = os.path.join(checkpoint, SCHEDULER_FILE)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(
            f"{path} is missing: the checkpoint holds no LRTuner state (saved with save_only_model=True, or cut "
            "short). Resume from a complete checkpoint."
        ) from None
    except Exception as error:  # torch reports truncation and corruption with several exception types
        raise CheckpointError(
            f"{path} (the LRTuner's state) cannot be read: it is truncated or corrupted ({type(error).__name__}: "
            f"{str(error)[:200]}). Resume from an earlier checkpoint."
        ) from None


def last_complete_checkpoint(output_dir: str) -> Optional[str]:
    """The newest `checkpoint-N` in `output_dir` that was saved completely, or `None`.

    Trainer writes `trainer_state.json` last (after LRTuner's files, which every process has written by then), and
    `Trainer.train(resume_from_checkpoint=True)` takes the newest folder even when a process was stopped while
    writing it. Pass this instead: `trainer.train(resume_from_checkpoint=last_complete_checkpoint(output_dir))`.

    Args:
        output_dir (`str`): Trainer's `output_dir`.
    """
    folders = [path for path in glob.glob(os.path.join(output_dir, "checkpoint-*"))
               if re.fullmatch(r"checkpoint-\d+", os.path.basename(path)) and os.path.isdir(path)]
    for folder in sorted(folders, key=lambda path: int(path.rsplit("-", 1)[1]), reverse=True):
        try:
            with open(os.path.join(folder, "trainer_state.json")) as file:
                json.load(file)
        except (FileNotFoundError, json.JSONDecodeError):
            continue
        return folder
    return None
