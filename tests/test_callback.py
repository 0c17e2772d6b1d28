"""LRTunerCallback / LRTunerTrainer inside a real transformers.Trainer, with a tiny random BERT."""

import dataclasses
import math

import pytest
import torch
from transformers import Trainer, TrainerCallback

from hf_lrtuner import LRTunerCallback, LRTunerConfig, LRTunerScheduler, LRTunerTrainer
from trainer_task import CountTask, tiny_args, tiny_bert

CONFIG = LRTunerConfig(tune_every=10, trial_steps=3, probe_batches=2, max_trial_fraction=0.5)


class RecordGroupLRs(TrainerCallback):
    """The LR of every parameter group for each update, read from the optimizer Trainer steps."""

    def __init__(self):
        self.lrs = []

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append([float(g["lr"]) for g in optimizer.param_groups])


def logged(trainer, key):
    return [(h["step"], h[key]) for h in trainer.state.log_history if key in h]


def user_optimizer_trainer(tmp_path, optimizer_cls=torch.optim.AdamW, callbacks=(), config=CONFIG, **args):
    model = tiny_bert()
    kwargs = {"momentum": 0.9} if optimizer_cls is torch.optim.SGD else {}
    optimizer = optimizer_cls(model.parameters(), lr=args.pop("learning_rate", 1e-3), **kwargs)
    scheduler = LRTunerScheduler(optimizer, config=config)
    trainer = Trainer(
        model=model, args=tiny_args(tmp_path, **args), train_dataset=CountTask(),
        optimizers=(optimizer, scheduler), callbacks=[LRTunerCallback(), *callbacks],
    )
    return trainer, scheduler


@pytest.mark.parametrize("optimizer_cls", [torch.optim.AdamW, torch.optim.SGD])
def test_user_optimizer_and_scheduler_tune_log_and_count(tmp_path, optimizer_cls):
    trainer, scheduler = user_optimizer_trainer(tmp_path, optimizer_cls, learning_rate=1e-3 if optimizer_cls is torch.optim.AdamW else 1e-2)
    trainer.train()
    tuner = scheduler.tuner
    assert tuner.total_steps == 60  # the budget came from Trainer's max_steps
    tuned_at = [step for step, _ in logged(trainer, "lrtuner/multiplier")]
    assert tuned_at == [r["step"] for r in tuner.records] and tuned_at[:2] == [0, 10]
    # Trainer's logged LR of each update is the one the tuner chose: in explore, the last tuning point's choice
    base = scheduler.base_lrs[0]
    for step, lr in logged(trainer, "learning_rate"):
        update = step - 1
        if update < tuner.switch_step:
            choice = [r["choice"] for r in tuner.records if r["step"] <= update][-1]
            assert lr == pytest.approx(base * choice)
        else:
            assert lr <= base * tuner.envelope(update) * (1 + 1e-9)
    (summary,) = [h for h in trainer.state.log_history if "lrtuner/overhead" in h]
    assert summary["lrtuner/trial_updates"] == tuner.trial_updates == 3 * sum(len(r["candidates"]) for r in tuner.records)
    assert summary["lrtuner/total_updates"] == 60 + tuner.trial_updates
    assert summary["lrtuner/overhead"] == pytest.approx(tuner.trial_updates / (60 + tuner.trial_updates))
    assert trainer.optimizer.param_groups[0]["lr"] == 0.0


def test_trainer_created_optimizer_and_scheduler(tmp_path):
    trainer = LRTunerTrainer(
        model=tiny_bert(), args=tiny_args(tmp_path, warmup_steps=0.1), train_dataset=CountTask(), lrtuner_config=CONFIG
    )
    trainer.train()
    scheduler = trainer.lr_scheduler
    assert isinstance(scheduler, LRTunerScheduler) and scheduler.tuner.config.warmup_steps == 6
    assert logged(trainer, "learning_rate")[0][1] == 0.0  # linear warmup starts at zero, as Trainer's own schedule
    assert len(scheduler.tuner.records) >= 2


def test_model_init_builds_a_fresh_tuner_for_each_train_call(tmp_path):
    trainer = LRTunerTrainer(model_init=lambda: tiny_bert(), args=tiny_args(tmp_path, max_steps=25), train_dataset=CountTask(), lrtuner_config=CONFIG)
    trainer.train()
    first = trainer.lr_scheduler
    trainer.train()
    assert trainer.lr_scheduler is not first and trainer.lr_scheduler.last_epoch == 25
    assert [r["step"] for r in trainer.lr_scheduler.tuner.records] == [r["step"] for r in first.tuner.records]


def test_parameter_groups_keep_their_lr_ratio(tmp_path):
    model = tiny_bert()
    head = [p for n, p in model.named_parameters() if n.startswith("classifier")]
    body = [p for n, p in model.named_parameters() if not n.startswith("classifier")]
    optimizer = torch.optim.AdamW([{"params": body, "lr": 1e-4}, {"params": head, "lr": 1e-3}])
    recorder = RecordGroupLRs()
    trainer = Trainer(
        model=model, args=tiny_args(tmp_path, max_steps=30), train_dataset=CountTask(),
        optimizers=(optimizer, LRTunerScheduler(optimizer, config=CONFIG)), callbacks=[LRTunerCallback(), recorder],
    )
    trainer.train()
    assert len(recorder.lrs) == 30 and len({round(b / a, 9) for a, b in recorder.lrs if a > 0}) == 1
    assert recorder.lrs[-1][1] / recorder.lrs[-1][0] == pytest.approx(10.0)


class Repeated(torch.utils.data.Dataset):
    """One example, many times: every micro-batch is the same, whatever order Trainer's sampler picks."""

    def __init__(self, n=16):
        self.example = CountTask(n=1)[0]
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.example


def lrtuner_callback(trainer):
    return next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, LRTunerCallback))


@pytest.mark.parametrize("accumulation", [1, 2])
def test_a_trial_update_is_the_update_trainer_makes(tmp_path, accumulation):
    """Same loss scaling over micro-batches, clipping and optimizer step as Trainer's own update."""
    args = dict(max_steps=1, gradient_accumulation_steps=accumulation, per_device_train_batch_size=8 // accumulation,
                max_grad_norm=0.05)

    def trained_once(model):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        trainer = Trainer(model=model, args=tiny_args(tmp_path, **args), train_dataset=Repeated(),
                          optimizers=(optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)))
        trainer.train()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    class TrialUpdateAtBegin(TrainerCallback):
        def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
            callback = lrtuner_callback(trainer)
            self.micro_batches = next(iter(callback.runner.batches))
            callback._trial_update(self.micro_batches)
            self.params = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])

    model = tiny_bert(dropout=0.0)  # trials draw their own dropout masks
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    recorder = TrialUpdateAtBegin()
    trainer = Trainer(
        model=model, args=tiny_args(tmp_path, **args), train_dataset=Repeated(), callbacks=[LRTunerCallback(), recorder],
        optimizers=(optimizer, LRTunerScheduler(optimizer, config=LRTunerConfig(max_trial_fraction=0.0))),
    )
    trainer.train()
    assert len(recorder.micro_batches) == accumulation
    assert torch.allclose(recorder.params, trained_once(tiny_bert(dropout=0.0)), atol=1e-6)
    assert not torch.allclose(recorder.params, torch.cat([p.detach().flatten() for p in tiny_bert().parameters()]))


def test_training_with_gradient_accumulation_draws_whole_updates_for_trials(tmp_path):
    trainer, scheduler = user_optimizer_trainer(tmp_path, config=dataclasses.replace(CONFIG, max_trial_fraction=1.0),
                                                gradient_accumulation_steps=2, per_device_train_batch_size=8, max_steps=25)
    trainer.train()
    batches = lrtuner_callback(trainer).runner.batches
    update = next(iter(batches))
    assert len(update) == 2 and update[0]["input_ids"].shape[0] == 8
    assert scheduler.last_epoch == 25 and [r["step"] for r in scheduler.tuner.records][:2] == [0, 10]


def test_trials_run_under_bf16_autocast(tmp_path):
    dtypes = []
    trainer, scheduler = user_optimizer_trainer(tmp_path, bf16=True, max_steps=12)
    trainer.model.bert.encoder.layer[0].output.dense.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    trainer.train()
    trial_forwards = scheduler.tuner.trial_updates + scheduler.tuner.probe_passes
    assert len(dtypes) >= 12 + trial_forwards
    assert set(dtypes) == {torch.bfloat16}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 loss scaling (and overflow-skipped steps) needs CUDA")
def test_fp16_overflow_skipped_steps_do_not_advance_the_tuner(tmp_path):
    trainer, scheduler = user_optimizer_trainer(tmp_path, fp16=True, use_cpu=False, max_steps=30)
    trainer.accelerator.scaler._init_scale = 2.0**40  # the first updates overflow and are skipped
    trainer.train()
    assert scheduler.last_epoch < trainer.state.global_step
    assert all(math.isfinite(p.float().sum()) for p in trainer.model.parameters())


def checkpoint_run(tmp_path, resume_from=None, max_steps=40):
    args = dict(max_steps=max_steps, save_strategy="steps", save_steps=5, seed=7)
    trainer, scheduler = user_optimizer_trainer(tmp_path, config=dataclasses.replace(CONFIG, max_trial_fraction=1.0), **args)
    trainer.train(resume_from_checkpoint=resume_from)
    return [(step, lr) for step, lr in logged(trainer, "learning_rate")], scheduler


@pytest.mark.parametrize("checkpoint_step", [15, 20])  # mid-explore between tuning points; right after tuning at 20
def test_resume_from_checkpoint_gives_the_identical_lr_trajectory(tmp_path, checkpoint_step):
    uninterrupted, scheduler = checkpoint_run(tmp_path / "full")
    assert [r["step"] for r in scheduler.tuner.records] == [0, 10, 20, 30]
    checkpoint = str(tmp_path / "full" / f"checkpoint-{checkpoint_step}")
    resumed, resumed_scheduler = checkpoint_run(tmp_path / "resumed", resume_from=checkpoint)
    assert resumed == uninterrupted  # steps up to the checkpoint come from its trainer_state.json, the rest were run
    assert [step for step, _ in resumed] == list(range(1, 41))  # tuning-point logs do not hide Trainer's own
    assert resumed_scheduler.tuner.records == scheduler.tuner.records


def test_callback_without_lrtuner_scheduler_is_refused(tmp_path):
    trainer = Trainer(model=tiny_bert(), args=tiny_args(tmp_path), train_dataset=CountTask(), callbacks=[LRTunerCallback()])
    with pytest.raises(ValueError, match="needs Trainer's lr_scheduler to be an LRTunerScheduler, got LambdaLR"):
        trainer.train()


def test_scheduler_of_another_optimizer_is_refused(tmp_path):
    model = tiny_bert()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    other = torch.optim.AdamW(model.parameters(), lr=1e-3)
    trainer = Trainer(model=model, args=tiny_args(tmp_path), train_dataset=CountTask(),
                      optimizers=(optimizer, LRTunerScheduler(other, config=CONFIG)), callbacks=[LRTunerCallback()])
    with pytest.raises(ValueError, match="different optimizer than the one Trainer steps"):
        trainer.train()


class CountStream(torch.utils.data.IterableDataset):
    def __iter__(self):
        task = CountTask()
        return (task[i] for i in range(len(task)))


def test_iterable_dataset_needs_a_budget_and_a_trial_dataset(tmp_path):
    with pytest.raises(ValueError, match="max_steps has to be specified"):  # Trainer's own check comes first
        LRTunerTrainer(model=tiny_bert(), args=tiny_args(tmp_path, max_steps=-1), train_dataset=CountStream(), lrtuner_config=CONFIG)
    trainer = LRTunerTrainer(model=tiny_bert(), args=tiny_args(tmp_path, max_steps=12), train_dataset=CountStream(), lrtuner_config=CONFIG)
    with pytest.raises(ValueError, match=r"Pass LRTunerCallback\(trial_dataset=...\)"):
        trainer.train()
    trainer = LRTunerTrainer(model=tiny_bert(), args=tiny_args(tmp_path, max_steps=20), train_dataset=CountStream(),
                             lrtuner_config=CONFIG, callbacks=[LRTunerCallback(trial_dataset=CountTask(n=64))])
    trainer.train()
    assert trainer.lr_scheduler.tuner.records


def test_fsdp_and_deepspeed_are_refused_with_an_alternative(tmp_path):
    trainer = LRTunerTrainer(model=tiny_bert(), args=tiny_args(tmp_path), train_dataset=CountTask(), lrtuner_config=CONFIG)
    # What Trainer sets when accelerate runs FSDP or DeepSpeed; both need a distributed launch (and DeepSpeed a GPU).
    trainer.is_fsdp_enabled = True
    with pytest.raises(ValueError, match="does not support FSDP.*Use DDP"):
        lrtuner_callback(trainer)._check_supported(trainer)
    trainer.is_fsdp_enabled, trainer.is_deepspeed_enabled = False, True
    with pytest.raises(ValueError, match="does not support DeepSpeed.*Use DDP"):
        lrtuner_callback(trainer)._check_supported(trainer)


def test_non_finite_loss_rolls_back_to_the_last_tuning_point(tmp_path):
    class PoisonAtStep(TrainerCallback):
        """Makes the weights non-finite after update 13, as a diverging run would."""

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == 13:
                with torch.no_grad():
                    model.classifier.weight.fill_(math.inf)

    trainer, scheduler = user_optimizer_trainer(tmp_path, callbacks=[PoisonAtStep()], max_steps=30)
    trainer.train()
    runner = lrtuner_callback(trainer).runner
    assert runner.rollbacks == 1
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert not scheduler.tuner.is_safe(scheduler.tuner.multiplier * 2, 14)
