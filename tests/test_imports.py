"""Optional dependencies stay optional: `import hf_lrtuner` pulls neither `datasets`, `evaluate` nor `transformers`;
`hf_lrtuner.squad` says how to install what it needs."""

import re
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent


def run_python(code: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter, where nothing is imported yet (on this checkout's `hf_lrtuner`: conftest)."""
    return subprocess.run([sys.executable, "-c", f"import sys\n{code}"], capture_output=True, text=True, timeout=120)


def test_import_hf_lrtuner_pulls_neither_datasets_nor_evaluate_nor_transformers():
    completed = run_python(
        "import hf_lrtuner, hf_lrtuner.schedules\n"
        "print(hf_lrtuner.__file__)\n"
        "print(sorted(m for m in ('datasets', 'evaluate', 'transformers', 'hf_lrtuner.squad') if m in sys.modules))"
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split("\n")[:2] == [str(REPO / "hf_lrtuner" / "__init__.py"), "[]"]


def test_squad_without_datasets_names_the_extra():
    completed = run_python("sys.modules['datasets'] = None\nimport hf_lrtuner.squad")  # makes `import datasets` fail
    assert completed.returncode != 0
    assert "ImportError: hf_lrtuner.squad needs the `datasets` library" in completed.stderr
    assert "pip install 'hf_lrtuner[squad]'" in completed.stderr


PEERS = ("prodigyopt", "schedulefree", "dadaptation", "torch_lr_finder")  # the [bench] extra's peer optimizers


def test_hf_lrtuner_and_the_product_tests_need_no_peer_optimizer_and_no_benchmark():
    """The peers are the benchmarks' ([bench]); hf_lrtuner and tests/ import neither them nor `benchmarks`."""
    files = sorted(set((REPO / "hf_lrtuner").rglob("*.py")) - {REPO / "hf_lrtuner" / "squad_metrics.py"})  # removed
    modules = [".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__") for path in files]
    completed = run_python(f"sys.modules.update(dict.fromkeys({PEERS!r}))\n"  # `import prodigyopt` etc. fail
                           f"import importlib\nfor name in {modules!r}:\n    importlib.import_module(name)\n"
                           "print(sorted(m for m in sys.modules if m.split('.')[0] == 'benchmarks'))")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().splitlines()[-1] == "[]"
    for path in sorted((REPO / "tests").glob("*.py")):
        imports = re.findall(r"^\s*(?:from|import) (\w+)", path.read_text(), flags=re.M)
        assert not set(imports) & {*PEERS, "benchmarks"}, f"{path.name} imports {set(imports) & {*PEERS, 'benchmarks'}}"
