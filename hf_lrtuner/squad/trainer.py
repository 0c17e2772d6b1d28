"""`QuestionAnsweringTrainer`: a `Trainer` whose `evaluate()` answers SQuAD questions and reports exact match and F1.

The counterpart of `trainer_qa.py` in transformers' question-answering example.
"""

import math
import time

import numpy as np
from datasets import Dataset
from torch.utils.data import SequentialSampler
from transformers import Trainer
from transformers.trainer_utils import has_length, speed_metrics

from .._trainer_internals import start_memory_tracking, stop_memory_tracking
from .metrics import squad_metrics
from .postprocess import postprocess_qa_predictions


class QuestionAnsweringTrainer(Trainer):
    """A `Trainer` whose `evaluate()` answers SQuAD questions and reports exact match and F1.

    `eval_dataset` holds the features of `build_validation_features` (with `example_id` and `offset_mapping`) and
    `eval_examples` the examples they came from. `evaluate()` runs the evaluation loop over the features in length
    order (so dynamically padded batches waste little compute), post-processes the logits with
    `postprocess_qa_predictions`, scores them with `squad_metrics` and logs `eval_exact_match` and `eval_f1`. The
    answers are kept in `last_predictions` (question id -> text) for writing `predictions.json`.

    Metrics are computed on every process from the gathered logits, so all ranks see the same numbers.

    Args:
        *args: Positional arguments of `transformers.Trainer`.
        eval_examples (`datasets.Dataset`, *optional*): SQuAD examples of `eval_dataset`, with gold answers.
        n_best_size (`int`, *optional*, defaults to 20): Start/end candidates per feature in post-processing.
        max_answer_length (`int`, *optional*, defaults to 30): Longest answer in tokens.
        **kwargs: Keyword arguments of `transformers.Trainer`.
    """

    def __init__(
        self, *args, eval_examples: Dataset | None = None, n_best_size: int = 20, max_answer_length: int = 30, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.eval_examples = eval_examples
        self.n_best_size = n_best_size
        self.max_answer_length = max_answer_length
        self.last_predictions: dict[str, str] | None = None

    def _get_eval_sampler(self, eval_dataset):
        # Logits are paired with features by position, so evaluation must keep the dataset order (Trainer would use a
        # shuffled LengthGroupedSampler under train_sampling_strategy="group_by_length").
        if eval_dataset is None or not has_length(eval_dataset):
            return None
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    def evaluate(
        self,
        eval_dataset: Dataset | None = None,
        eval_examples: Dataset | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """Answer the evaluation questions and return exact match and F1 (in percent) plus speed metrics.

        Args:
            eval_dataset (`datasets.Dataset`, *optional*): Evaluation features; defaults to `self.eval_dataset`.
            eval_examples (`datasets.Dataset`, *optional*): Their examples; defaults to `self.eval_examples`.
            ignore_keys (`list[str]`, *optional*): Model output keys to ignore when gathering predictions.
            metric_key_prefix (`str`, *optional*, defaults to `"eval"`): Prefix of the metric names, e.g.
                `eval_exact_match`, `eval_f1`.

        Returns:
            `dict[str, float]`: `{prefix}_exact_match`, `{prefix}_f1`, runtime and throughput metrics.
        """
        features = eval_dataset if eval_dataset is not None else self.eval_dataset
        examples = eval_examples if eval_examples is not None else self.eval_examples
        if isinstance(features, dict):
            raise ValueError("QuestionAnsweringTrainer evaluates one set of features at a time, not a dict of them.")
        if features is None or examples is None:
            raise ValueError(
                "QuestionAnsweringTrainer.evaluate needs evaluation features and their examples: pass eval_dataset "
                "(from build_validation_features) and eval_examples to the trainer or to evaluate()."
            )
        missing = {"example_id", "offset_mapping"} - set(features.column_names)
        if missing:
            raise ValueError(
                f"The evaluation features lack {sorted(missing)}; build them with build_validation_features (or "
                "prepare_validation_features), not with the training feature function."
            )
        start_memory_tracking(self)
        lengths = [len(input_ids) for input_ids in features["input_ids"]]
        features = features.select(np.argsort(lengths, kind="stable"))
        dataloader = self.get_eval_dataloader(features.remove_columns(["example_id", "offset_mapping"]))
        start_time = time.time()
        output = self.evaluation_loop(
            dataloader,
            description="Evaluation",
            prediction_loss_only=False,
            ignore_keys=ignore_keys,
            metric_key_prefix=metric_key_prefix,
        )
        start_logits, end_logits = output.predictions[:2]
        predictions = postprocess_qa_predictions(
            examples, features, start_logits, end_logits, self.n_best_size, self.max_answer_length
        )
        metrics = {
            f"{metric_key_prefix}_{name}": value for name, value in squad_metrics(predictions, examples).items()
        }
        metrics.update(output.metrics)
        if f"{metric_key_prefix}_model_preparation_time" in output.metrics:
            start_time += output.metrics[f"{metric_key_prefix}_model_preparation_time"]
        total_batch_size = self.args.eval_batch_size * self.args.world_size
        metrics.update(
            speed_metrics(
                metric_key_prefix,
                start_time,
                num_samples=output.num_samples,
                num_steps=math.ceil(output.num_samples / total_batch_size),
            )
        )
        self.last_predictions = predictions
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        stop_memory_tracking(self, metrics)
        return metrics
