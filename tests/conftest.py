import os

import torch

# Tiny models gain nothing from intra-op threads, and on a 2-core machine spinning threads of two processes slow
# each other down by an order of magnitude.
torch.set_num_threads(1)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
