"""A tiny randomly initialised BERT on a tiny learnable task, for Trainer-integration tests."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, TrainingArguments

VOCAB, LENGTH = 64, 16
# Trainer resumes from a checkpoint through torch.load, which transformers refuses before torch 2.6.
needs_trainer_resume = pytest.mark.skipif(torch.__version__ < "2.6", reason="transformers refuses torch.load before "
                                          "torch 2.6 (CVE-2025-32434), so Trainer cannot resume from a checkpoint")


class CountTask(torch.utils.data.Dataset):
    """Label 1 when more than half of the tokens come from the lower half of the vocabulary."""

    def __init__(self, n=512, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.input_ids = torch.randint(1, VOCAB, (n, LENGTH), generator=g)
        self.labels = ((self.input_ids < VOCAB // 2).sum(-1) > LENGTH // 2).long()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.input_ids[i], "attention_mask": torch.ones(LENGTH, dtype=torch.long), "labels": self.labels[i]}


def tiny_bert(seed=0, num_labels=2, dropout=0.1):
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=LENGTH, num_labels=num_labels, hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout, classifier_dropout=dropout,
    )
    return BertForSequenceClassification(config)


def tiny_args(output_dir, **overrides):
    settings = dict(
        output_dir=str(output_dir), per_device_train_batch_size=16, max_steps=60, learning_rate=1e-3,
        logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, seed=0, use_cpu=True,
        dataloader_num_workers=0,
    )
    settings.update(overrides)
    return TrainingArguments(**settings)
