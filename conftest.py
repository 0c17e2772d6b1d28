import os
from pathlib import Path

import torch

# Tiny models gain nothing from intra-op threads, and on a 2-core machine spinning threads of two processes slow
# each other down by an order of magnitude.
torch.set_num_threads(1)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Shared by the product's tests (tests/) and the benchmarks' (benchmarks/tests/). Subprocesses (DDP ranks, notebook
# kernels, fresh interpreters) import this checkout's hf_lrtuner, its benchmarks and the example the test tasks build
# on, as the tests do through pytest's pythonpath, not another installed copy.
REPO = Path(__file__).resolve().parent
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(REPO), str(REPO / "examples"), os.environ.get("PYTHONPATH")])
)
