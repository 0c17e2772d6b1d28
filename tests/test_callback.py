"""LRTunerCallback / LRTunerTrainer inside a real transformers.Trainer, with a tiny random BERT."""

import math
from types import SimpleNamespace

import pytest
import torch
from transformers import Trainer, TrainerCallback

from hf_lrtuner import LRTunerCallback, LRTunerConfig, LRTunerScheduler, LRTunerTrainer
from hf_lrtuner.compat import warmup_fraction
from trainer_task import CountTask, needs_trainer_resume, tiny_args, tiny_bert

CONFIG = LRTunerConfig(race_horizon=10)


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
    callback = LRTunerCallback()  # first in the list: it sees each update before the test's own callbacks
    trainer = Trainer(
        model=model, args=tiny_args(tmp_path, **args), train_dataset=CountTask(),
        optimizers=(optimizer, scheduler), callbacks=[callback, *callbacks],
    )
    callback.bind(trainer)
    return trainer, scheduler


def multiplier_of_update(tuner, update):
    """The multiplier the real run trained update `update` at: the outcome of the last race that had ended by then."""
    return ([1.0] + [r["multiplier"] for r in tuner.records if r["end_step"] <= update])[-1]


@pytest.mark.parametrize("optimizer_cls", [torch.optim.AdamW, torch.optim.SGD])
def test_user_optimizer_and_scheduler_race_log_and_count(tmp_path, optimizer_cls):
    recorder = RecordGroupLRs()
    lr = 1e-4 if optimizer_cls is torch.optim.AdamW else 1e-3  # 10x low: races raise it
    # No margin, so that this short run on a hard task races more than once (a tie settles the multiplier at once)
    config = LRTunerConfig(race_horizon=10, race_margin=0.0, min_improvement=0.0)
    trainer, scheduler = user_optimizer_trainer(tmp_path, optimizer_cls, callbacks=[recorder], learning_rate=lr,
                                                logging_steps=500, config=config)
    trainer.train()
    tuner = scheduler.tuner
    assert tuner.total_steps == 60  # the budget came from Trainer's max_steps
    assert [r["step"] for r in tuner.records][:2] == [0, 10] and tuner.multiplier > 1.0
    assert [step for step, _ in logged(trainer, "lrtuner/multiplier")][:-1] == [r["end_step"] for r in tuner.records]
    # The LR applied to each update is the schedule at the multiplier of the races that had ended by then
    for update, (applied,) in enumerate(recorder.lrs):
        assert applied == pytest.approx(lr * tuner.lr_factor_at(update, multiplier_of_update(tuner, update)))
    (summary,) = [h for h in trainer.state.log_history if "lrtuner/overhead" in h]
    raced = [updates for r in tuner.records for updates in r["updates"][1:]]
    assert summary["lrtuner/trial_updates"] == tuner.trial_updates == sum(raced)
    assert summary["lrtuner/total_updates"] == 60 + tuner.trial_updates
    assert summary["lrtuner/overhead"] == pytest.approx(tuner.trial_updates / (60 + tuner.trial_updates))
    assert trainer.optimizer.param_groups[0]["lr"] == 0.0
    assert "training_step" not in vars(trainer)  # the recording wrapper is gone after training


def test_with_an_unbeatable_margin_a_trainer_run_is_bit_identical_to_trainers_linear_schedule(tmp_path):
    """Races replay branches, but the real run (dropout included) must not notice: no harm at a good LR."""
    def run(with_tuner):
        model = tiny_bert(dropout=0.1)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        if with_tuner:
            scheduler = LRTunerScheduler(optimizer, config=LRTunerConfig(warmup_steps=6, race_horizon=10, race_margin=1e9))
        else:
            from transformers import get_linear_schedule_with_warmup

            scheduler = get_linear_schedule_with_warmup(optimizer, 6, 60)
        trainer = Trainer(model=model, args=tiny_args(tmp_path / str(with_tuner)), train_dataset=CountTask(),
                          optimizers=(optimizer, scheduler))
        if with_tuner:
            LRTunerCallback().bind(trainer)
        trainer.train()
        return trainer, torch.cat([p.detach().flatten() for p in model.parameters()])

    tuned, tuned_params = run(True)
    linear, linear_params = run(False)
    assert tuned.lr_scheduler.tuner.trial_updates == 5 + 10  # both challengers raced
    assert torch.equal(tuned_params, linear_params)
    assert logged(tuned, "loss") == logged(linear, "loss")


def test_trainer_created_optimizer_and_scheduler(tmp_path):
    trainer = LRTunerTrainer(
        model=tiny_bert(), args=tiny_args(tmp_path, **warmup_fraction(0.1)), train_dataset=CountTask(), lrtuner_config=CONFIG
    )
    trainer.train()
    scheduler = trainer.lr_scheduler
    assert isinstance(scheduler, LRTunerScheduler) and scheduler.tuner.config.warmup_steps == 6
    assert logged(trainer, "learning_rate")[0][1] == 0.0  # linear warmup starts at zero, as Trainer's own schedule
    assert len(scheduler.tuner.records) >= 1


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
        optimizers=(optimizer, LRTunerScheduler(optimizer, config=CONFIG)), callbacks=[recorder],
    )
    LRTunerCallback().bind(trainer)
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
def test_a_replayed_update_is_the_update_trainer_made(tmp_path, accumulation):
    """Same micro-batches, loss scaling over them, clipping and optimizer step as Trainer's own update."""

    class ReplayFirstUpdate(TrainerCallback):  # runs before LRTunerCallback's on_step_end, which consumes the batches
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step != 1:
                return
            callback = lrtuner_callback(trainer)
            self.micro_batches = list(callback._update_batches)
            trained = torch.cat([p.detach().flatten() for p in model.parameters()])
            callback.runner.safe_point.restore()  # the state before update 0
            self.moved = not torch.equal(trained, torch.cat([p.detach().flatten() for p in model.parameters()]))
            callback.scheduler.set_trial_lr(callback.scheduler.tuner.lr_factor_at(0))
            callback.runner.train_step(self.micro_batches)  # the replay races use
            callback.scheduler.apply_lr()
            self.difference = (trained - torch.cat([p.detach().flatten() for p in model.parameters()])).abs().max()

    model = tiny_bert(dropout=0.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    replay = ReplayFirstUpdate()
    trainer = Trainer(
        model=model, args=tiny_args(tmp_path, max_steps=2, gradient_accumulation_steps=accumulation,
                                    per_device_train_batch_size=8 // accumulation, max_grad_norm=0.05),
        train_dataset=CountTask(), callbacks=[replay],
        optimizers=(optimizer, LRTunerScheduler(optimizer, config=LRTunerConfig(race_horizon=2, down_horizon=2, race_until=1.0))),
    )
    LRTunerCallback().bind(trainer)
    trainer.train()
    assert len(replay.micro_batches) == accumulation and replay.moved
    assert float(replay.difference) < 1e-6


def test_challengers_run_under_bf16_autocast(tmp_path):
    dtypes = []
    trainer, scheduler = user_optimizer_trainer(tmp_path, bf16=True, max_steps=25)
    trainer.model.bert.encoder.layer[0].output.dense.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    trainer.train()
    assert scheduler.tuner.trial_updates >= 15
    assert len(dtypes) == 25 + scheduler.tuner.trial_updates
    assert set(dtypes) == {torch.bfloat16}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 loss scaling (and overflow-skipped steps) needs CUDA")
def test_fp16_overflow_skipped_steps_do_not_advance_the_tuner(tmp_path):
    trainer, scheduler = user_optimizer_trainer(tmp_path, fp16=True, use_cpu=False, max_steps=30)
    trainer.accelerator.scaler._init_scale = 2.0**40  # the first updates overflow and are skipped
    trainer.train()
    assert scheduler.last_epoch < trainer.state.global_step
    assert all(math.isfinite(p.float().sum()) for p in trainer.model.parameters())


def checkpoint_run(tmp_path, resume_from=None, max_steps=60):
    args = dict(max_steps=max_steps, save_strategy="steps", save_steps=5, seed=7, learning_rate=1e-4)
    # No margin, so that this short run on a hard task races three times (a tie would settle the multiplier at once)
    config = LRTunerConfig(race_horizon=10, race_margin=0.0, min_improvement=0.0)
    trainer, scheduler = user_optimizer_trainer(tmp_path, config=config, **args)
    trainer.train(resume_from_checkpoint=resume_from)
    return [(step, lr) for step, lr in logged(trainer, "learning_rate")], scheduler


@needs_trainer_resume
@pytest.mark.parametrize("checkpoint_step", [20, 35])  # a race starts at 20; 35 follows the last race
def test_resume_from_checkpoint_gives_the_identical_lr_trajectory(tmp_path, checkpoint_step):
    uninterrupted, scheduler = checkpoint_run(tmp_path / "full")
    assert [r["step"] for r in scheduler.tuner.records] == [0, 10, 20]
    checkpoint = str(tmp_path / "full" / f"checkpoint-{checkpoint_step}")
    resumed, resumed_scheduler = checkpoint_run(tmp_path / "resumed", resume_from=checkpoint)
    assert resumed == uninterrupted  # steps up to the checkpoint come from its trainer_state.json, the rest were run
    assert [step for step, _ in resumed] == list(range(1, 61))  # race logs do not hide Trainer's own
    assert resumed_scheduler.tuner.records == scheduler.tuner.records


def test_an_unbound_callback_refuses_to_start_and_says_how_to_bind_it(tmp_path):
    model = tiny_bert()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    callback = LRTunerCallback()
    trainer = Trainer(model=model, args=tiny_args(tmp_path), train_dataset=CountTask(), callbacks=[callback],
                      optimizers=(optimizer, LRTunerScheduler(optimizer, config=CONFIG)))
    with pytest.raises(RuntimeError, match=r"not bound to a Trainer.*LRTunerCallback\(\).bind\(trainer\)"):
        trainer.train()
    with pytest.raises(TypeError, match="needs a transformers.Trainer"):
        callback.bind(model)
    assert callback.bind(trainer) is callback and trainer.callback_handler.callbacks.count(callback) == 1
    other = Trainer(model=tiny_bert(), args=tiny_args(tmp_path), train_dataset=CountTask())
    with pytest.raises(ValueError, match="bound to another Trainer"):
        callback.bind(other)


def test_bind_adds_the_callback_to_its_trainer(tmp_path):
    model = tiny_bert()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    trainer = Trainer(model=model, args=tiny_args(tmp_path, max_steps=20), train_dataset=CountTask(),
                      optimizers=(optimizer, LRTunerScheduler(optimizer, config=CONFIG)))
    callback = LRTunerCallback().bind(trainer)
    assert callback in trainer.callback_handler.callbacks
    trainer.train()
    assert callback.scheduler.tuner.records and "training_step" not in vars(trainer)  # Trainer's own method again


def test_callback_without_lrtuner_scheduler_is_refused(tmp_path):
    trainer = Trainer(model=tiny_bert(), args=tiny_args(tmp_path), train_dataset=CountTask())
    LRTunerCallback().bind(trainer)
    with pytest.raises(ValueError, match="needs Trainer's lr_scheduler to be an LRTunerScheduler, got LambdaLR"):
        trainer.train()


def test_scheduler_of_another_optimizer_is_refused(tmp_path):
    model = tiny_bert()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    other = torch.optim.AdamW(model.parameters(), lr=1e-3)
    trainer = Trainer(model=model, args=tiny_args(tmp_path), train_dataset=CountTask(),
                      optimizers=(optimizer, LRTunerScheduler(other, config=CONFIG)))
    LRTunerCallback().bind(trainer)
    with pytest.raises(ValueError, match="different optimizer than the one Trainer steps"):
        trainer.train()


class CountStream(torch.utils.data.IterableDataset):
    def __iter__(self):
        task = CountTask()
        return (task[i] for i in range(len(task)))


def test_iterable_dataset_needs_only_a_budget(tmp_path):
    with pytest.raises(ValueError, match="max_steps has to be specified"):  # Trainer's own check
        LRTunerTrainer(model=tiny_bert(), args=tiny_args(tmp_path, max_steps=-1), train_dataset=CountStream(), lrtuner_config=CONFIG)
    # Races replay the batches the run itself drew, so a stream needs nothing else.
    trainer = LRTunerTrainer(model=tiny_bert(), args=tiny_args(tmp_path, max_steps=20), train_dataset=CountStream(),
                             lrtuner_config=CONFIG)
    trainer.train()
    assert trainer.lr_scheduler.tuner.records and trainer.lr_scheduler.tuner.trial_updates >= 10


def test_fsdp1_and_deepspeed_are_refused_with_fsdp2_as_the_alternative(tmp_path, monkeypatch):
    trainer = LRTunerTrainer(model=tiny_bert(), args=tiny_args(tmp_path), train_dataset=CountTask(), lrtuner_config=CONFIG)
    callback = lrtuner_callback(trainer)
    # What Trainer and accelerate set under FSDP or DeepSpeed (a real FSDP2 run is in test_distributed.py).
    trainer.is_fsdp_enabled = True
    monkeypatch.setattr(trainer.accelerator.state, "fsdp_plugin", SimpleNamespace(fsdp_version=1), raising=False)
    with pytest.raises(ValueError, match=r"supports FSDP2 .*not FSDP1.*fsdp_config=\{'version': 2"):
        callback._check_supported(trainer)
    trainer.accelerator.state.fsdp_plugin.fsdp_version = 2
    callback._check_supported(trainer)
    # Trainer refuses optimizers=(...) under FSDP, so the usual advice would not work there
    other = torch.optim.lr_scheduler.ConstantLR(torch.optim.SGD(trainer.model.parameters()))
    with pytest.raises(ValueError, match="got ConstantLR. Trainer refuses optimizers=.* under FSDP: use LRTunerTr"):
        callback._check_scheduler(trainer, other)
    trainer.is_fsdp_enabled, trainer.is_deepspeed_enabled = False, True
    with pytest.raises(ValueError, match=r"does not support DeepSpeed.*Use FSDP2 instead \(LRTunerTrainer"):
        callback._check_supported(trainer)


def test_a_non_finite_loss_rolls_back_at_once_whatever_the_logging_interval(tmp_path):
    class PoisonAtStep(TrainerCallback):
        """Makes the weights non-finite after update 33, as a diverging run would."""

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == 33:
                with torch.no_grad():
                    model.classifier.weight.fill_(math.inf)

    trainer, scheduler = user_optimizer_trainer(tmp_path, callbacks=[PoisonAtStep()], max_steps=50, logging_steps=500)
    trainer.train()
    tuner = scheduler.tuner
    rollback = [r for r in tuner.records if "rollback_to" in r]
    assert tuner.rollbacks == 1 and rollback[0]["step"] == 34  # the first update on the poisoned weights
    assert rollback[0]["rollback_to"] <= 33 and all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert tuner.unsafe_from is not None
