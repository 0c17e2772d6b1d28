"""scripts/gpu_check.sh on a CPU: its arguments, and a --dry-run (the plan, the CPU-runnable stages, two tiny runs)."""

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "gpu_check.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="gpu_check.sh needs bash and coreutils' timeout")


def gpu_check(*args, timeout=60, **env):
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHON": sys.executable, **env},
    )


def test_help():
    result = gpu_check("--help")
    assert result.returncode == 0
    assert "--budget-s N" in result.stdout and "--dry-run" in result.stdout and "--prepare-wheels" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bogus"], "unknown argument --bogus"),
        (["--budget-s"], "--budget-s needs a value"),
        (["--budget-s", "abc"], "whole number of seconds"),
        (["--budget-s=30"], "at least 60"),
        (["--out"], "--out needs a value"),
        (["--stages", "env,gpu"], "unknown stage 'gpu'"),
    ],
)
def test_bad_arguments_exit_2_before_doing_anything(args, message, tmp_path):
    result = gpu_check(*args, OUT=str(tmp_path / "never"))
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "never").exists()


@pytest.mark.slow
def test_dry_run_plans_and_runs_tiny_cpu_stages(tmp_path):
    out = tmp_path / "gpu_out"
    result = gpu_check("--dry-run", "--budget-s", "300", "--out", str(out), timeout=180,
                       HF_LRTUNER_SUITE_CACHE=str(tmp_path / "cache"))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    # the plan: the default stages, the larger SQuAD tier with linear, LRTuner and the best peer at x1 and x10
    assert "pip install -q --no-index --no-deps" in log and "--target /tmp/site" in log
    assert "-k '(fp16 or cuda or gpu) and not gpu_check'" in log
    assert ("-m benchmarks.suite --tasks squad_minilm_large --stage test --eta 2e-4 --methods linear lrtuner "
            "prodigy --guesses 1 10 --seeds 0 1 2 --device cuda") in log
    assert "demo:" not in log and "suite:" not in log  # not in the default stages
    # nothing installed, nothing on a GPU; the CPU stages ran and passed
    summary = (out / "summary.txt").read_text()
    for stage in ("env", "suite_help", "pytest_collect", "tiny_cpu_runs"):
        assert f"{stage}: ok" in summary, summary
    assert "install:" not in summary
    assert "all stages ok" in summary
    with tarfile.open(out / "logs.tar.gz") as logs:  # OUT keeps a few files: the stage logs travel as one archive
        read = {name: logs.extractfile(name).read().decode() for name in logs.getnames()}
    tiny = read["tiny_cpu_runs.log"]
    assert "linear accuracy" in tiny and "lrtuner accuracy" in tiny and "prodigy accuracy" in tiny
    # the squad_minilm_large command line: all training questions, batch 32, bf16
    assert "--max_train_examples 100000" in tiny and "--per_device_train_batch_size 32" in tiny
    assert "--bf16 true" in tiny and "--max_steps 240" in tiny
    assert "test_fp16_overflow_skipped_steps_do_not_advance_the_tuner" in read["pytest_collect.log"]
    assert sorted(path.name for path in out.iterdir()) == ["logs.tar.gz", "summary.txt"]


@pytest.mark.slow
def test_dry_run_plans_chosen_stages_with_suite_arguments(tmp_path):
    result = gpu_check("--dry-run", "--stages", "demo,suite,memory", "--out", str(tmp_path / "out"), "--", "--tasks",
                       "squad_minilm", "--methods", "schedulefree", timeout=180,
                       HF_LRTUNER_SUITE_CACHE=str(tmp_path / "cache"))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "-m benchmarks.demo --jobs 6 --work " in log and "--records " in log
    assert "-m benchmarks.suite --device cuda --jobs 12 --csv " in log
    assert "--tasks squad_minilm --methods schedulefree" in log
    assert "-m benchmarks.memory --device cuda --csv " in log
    assert "squad_large:" not in log and "install:" not in log
