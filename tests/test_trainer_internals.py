"""`hf_lrtuner/_trainer_internals.py` and `hf_lrtuner/_accelerate_internals.py` against the installed transformers and
accelerate: every private attribute they list exists (so that a rename fails here, not in a user's run), they list
every one their code reads, nothing else in hf_lrtuner reads one, and the versions stated as tested are the ones
setup.cfg, scripts/setup_env.sh and the version matrix install."""

import configparser
import importlib
import os
import re
from importlib.metadata import version
from pathlib import Path

import pytest
import torch
from packaging.version import Version
from transformers import Trainer

from hf_lrtuner import _accelerate_internals, _trainer_internals as internals
from trainer_task import CountTask, tiny_args, tiny_bert

REPO = Path(__file__).resolve().parent.parent


def _resolve(dotted: str):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_every_listed_private_attribute_exists_in_the_installed_versions(tmp_path):
    from accelerate.scheduler import AcceleratedScheduler
    from accelerate.utils import FullyShardedDataParallelPlugin

    trainer = Trainer(model=tiny_bert(), args=tiny_args(tmp_path, max_steps=2), train_dataset=CountTask(64))
    trainer.train()  # sets what only training sets (current_gradient_accumulation_steps, the wrapped optimizer)
    instances = {
        "transformers.Trainer": trainer,
        "accelerate.Accelerator": trainer.accelerator,
        "accelerate.state.GradientState": trainer.accelerator.gradient_state,
        "accelerate.optimizer.AcceleratedOptimizer": trainer.optimizer,
        "accelerate.scheduler.AcceleratedScheduler": AcceleratedScheduler(trainer.lr_scheduler, trainer.optimizer),
        "accelerate.utils.FullyShardedDataParallelPlugin": FullyShardedDataParallelPlugin(),
    }
    listed = {**internals.private_attributes(), **_accelerate_internals.private_attributes()}
    assert set(listed) == set(instances)
    for owner, attributes in listed.items():
        instance = instances[owner]
        assert isinstance(instance, _resolve(owner))
        missing = [name for name in attributes if not hasattr(instance, name)]
        assert not missing, f"{owner} has no {missing}: update hf_lrtuner/_trainer_internals.py for this version"


def test_the_private_attributes_the_module_reads_are_all_listed():
    source = (REPO / "hf_lrtuner" / "_trainer_internals.py").read_text()
    read = set(re.findall(r"\.(_[a-z]\w*)", source))
    listed = {name for attributes in internals.private_attributes().values() for name in attributes}
    version_specific = {"_clip_grad_norm"}  # transformers 5.x only (4.x clips inline)
    assert read and read <= listed | version_specific
    # the accelerate seam: its undocumented attributes are public names, read as `wrapper.name`
    source = (REPO / "hf_lrtuner" / "_accelerate_internals.py").read_text()
    for owner, attributes in _accelerate_internals.private_attributes().items():
        assert all(f"scheduler.{name}" in source or f'"{name}"' in source for name in attributes), owner


def test_no_other_module_reads_a_private_attribute_of_trainer_or_accelerate():
    """Outside the two seams hf_lrtuner reads no private attribute of another library's object (its own `self._x` and
    module-level `_x` are its business), and overrides only the listed `Trainer._get_eval_sampler`."""
    listed = {name for attributes in internals.private_attributes().values() for name in attributes}
    for path in sorted((REPO / "hf_lrtuner").rglob("*.py")):
        if path.name in ("_trainer_internals.py", "_accelerate_internals.py"):
            continue
        source = path.read_text()
        foreign = set(re.findall(r"\b(?:trainer|accelerator|optimizer|scheduler|model)\.(_[a-z]\w*)", source))
        assert not foreign, f"{path.relative_to(REPO)} reads {foreign}: go through hf_lrtuner/_trainer_internals.py"
        overridden = set(re.findall(r"^    def (_[a-z]\w*)\(", source, flags=re.M)) & {"_get_eval_sampler",
                                                                                        "_clip_grad_norm"}
        assert overridden <= listed, f"{path.relative_to(REPO)} overrides {overridden - listed} unlisted"


def test_clip_gradients_clips_to_max_grad_norm_as_trainer_does(tmp_path):
    trainer = Trainer(model=tiny_bert(), args=tiny_args(tmp_path, max_steps=1, max_grad_norm=1e-3),
                      train_dataset=CountTask(64))
    trainer.train()  # prepares the model and optimizer with accelerate
    model = trainer.model_wrapped
    model(**next(iter(trainer.get_train_dataloader()))).loss.backward()

    def gradient_norm():
        return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])).item()

    assert gradient_norm() > 0.1
    internals.clip_gradients(trainer, model)
    assert gradient_norm() == pytest.approx(1e-3, rel=1e-4)


def _installed(package: str) -> Version:
    return Version(Version(version(package)).public)  # torch's CPU wheel is 2.13.0+cpu


def test_setup_cfg_floors_are_the_tested_floor():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    floors = dict(
        re.fullmatch(r"([\w-]+)>=([\d.]+)", line.strip()).groups()
        for line in config["options"]["install_requires"].strip().splitlines()
    )
    assert {name: Version(floor) for name, floor in floors.items()} == {
        name: Version(tested) for name, tested in internals.TESTED_VERSIONS["floor"].items()
    }


def test_the_newest_tested_torch_is_the_one_setup_env_installs():
    """setup_env.sh pins torch's CPU wheel and installs the newest transformers and accelerate, which the version
    matrix's newest end checks against `TESTED_VERSIONS` (below)."""
    pins = dict(re.findall(r"pip install --quiet ([\w-]+)==([\d.]+)", (REPO / "scripts" / "setup_env.sh").read_text()))
    assert pins["torch"] == internals.TESTED_VERSIONS["newest"]["torch"]


def test_installed_versions_are_the_stated_tested_end():
    end = os.environ.get("HF_LRTUNER_MATRIX_END")
    if end is None:
        pytest.skip("run by scripts/version_matrix.sh, which sets HF_LRTUNER_MATRIX_END to the end it installed")
    installed = {package: _installed(package) for package in internals.TESTED_VERSIONS[end]}
    stated = {package: Version(tested) for package, tested in internals.TESTED_VERSIONS[end].items()}
    assert installed == stated, (
        f"the {end} end installed {installed}; hf_lrtuner/_trainer_internals.py states {stated}: check its list "
        "against the new release's trainer.py and update TESTED_VERSIONS"
    )
