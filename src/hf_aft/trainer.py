"""`AFTTrainer`: a `transformers.Trainer` whose loss is task loss + beta * transfer loss.

The trainer never runs a teacher during training: it reads the `teacher_features` column (made or checked by
`hf_aft.features.with_teacher_features`, the one path to features), captures the student's features at the input of
its classification head (student.py), and adds the transfer loss (losses.py). The transfer loss's own parameters
(AFT's scales, KD's projection) train in their own optimizer group and are saved beside the student (outputs.py),
which stays a plain transformers model.
"""

from __future__ import annotations

import os
from collections import defaultdict

import torch
from transformers import Trainer

from .callbacks import StallDetector, ZeroTransferGrads
from .card import card_facts_from_trainer, write_model_card
from .collators import ImageCollator, TeacherFeatureCollator
from .config import AFTConfig, OptionsRecord
from .distillation import TARGETS_COLUMN
from .distributed import gather, gather_with_grad
from .errors import AFTError, first_line
from .features import FEATURES_COLUMN, TeacherInfo
from .hub import push_run
from .hub_reach import check_can_push
from .images import check_image_column
from .losses import AdaptiveKernelLoss, GradNormGuard, build_transfer_loss, check_finite_loss
from .outputs import check_checkpoint_files, restore_after_resume, save_transfer_files, share_like_other_files
from .resume_check import check_resumed_trainer
from .student import StudentFeatureCapture, feature_dim
from .student_peft import wrap_peft
from .teachers import display_names
from .trainer_inputs import NO_HYPERPARAMETER_SEARCH, LaterEvalSets, checked_trainer_inputs, eval_sets
from .training_rows import distill_term, labelled_loss, prepare_training_rows, terms_summary
from .word_batches import TokenCollator, word_pairs, word_transfer
from .words import WORD_POSITIONS


class AFTTrainer(LaterEvalSets, GradNormGuard, Trainer):
    """Trainer for Adaptive Feature Transfer (and the KD, RKD and plain fine-tuning baselines).

    Args:
        model: any `AutoModelFor...Classification` student.
        args: an `AFTConfig`.
        train_dataset: tokenized training data with a `teacher_features` column, or with `text_column` when
            `args.teachers` is set (the column is then computed and cached before training).
        teacher_infos: per-teacher names and widths of the column; read from the dataset when it was made by
            `extract_teacher_features`, else the whole column counts as one teacher.
        text_column: the column text teachers read, when the trainer extracts the features itself.
        image_column: for image students: the column of images (PIL images, arrays or file paths). Each batch goes
            through `processing_class` (the student's `AutoImageProcessor`) on the fly, and image teachers read it.
        peft_config: a `peft.PeftConfig` (e.g. `LoraConfig`): the student is wrapped with `get_peft_model`, only the
            adapter and the classification head train, and the output dir gets the adapter plus the head (loadable
            with `peft.AutoPeftModelForSequenceClassification`); the transfer loss sees the adapted model's features.
        unlabeled_dataset: rows without labels, prepared as `train_dataset` is (tokenized, or the image column; any
            label column is dropped, with a warning). Their teacher features are made by the same path; every
            training batch mixes them with labelled rows (`args.labeled_fraction`, `hf_aft.unlabeled.MixedSampler`):
            the task loss reads the labelled rows only, the transfer and distillation terms every row.
        **kwargs: everything else is passed to `transformers.Trainer`.

    Raises:
        AFTError: a missing student or config, a dataset that is not one split (a `datasets.Dataset`), an
            untokenized one, an empty or too small training set, labels the student cannot train on (outside the
            head, missing, floats for a classifier, NaN targets: `hf_aft.trainer_inputs`), a feature column that
            does not match its teachers or holds NaN/inf, unlabelled data without the labelled data's columns, a
            task teacher for other labels.
    """

    def __init__(self, model=None, args: AFTConfig | None = None, train_dataset=None, eval_dataset=None,
                 processing_class=None, teacher_infos: list[TeacherInfo] | None = None, text_column: str = "text",
                 image_column: str | None = None, peft_config=None, unlabeled_dataset=None, **kwargs):
        args, train_dataset, eval_dataset = checked_trainer_inputs(
            model, args, train_dataset, eval_dataset, unlabeled_dataset, image_column, kwargs, teacher_infos)
        if peft_config is not None:
            model = wrap_peft(model, peft_config)
        self.image_column = image_column
        if image_column is not None:
            for dataset in (train_dataset, *eval_sets(eval_dataset).values()):
                check_image_column(dataset, image_column)
            if kwargs.get("data_collator") is None:
                kwargs["data_collator"] = ImageCollator(processing_class, image_column)
        if WORD_POSITIONS in getattr(train_dataset, "column_names", ()) and kwargs.get("data_collator") is None:
            kwargs["data_collator"] = TokenCollator(processing_class)  # labels -100, positions -1, features NaN
        self.rows = rows = prepare_training_rows(model, args, train_dataset, unlabeled_dataset, text_column,
                                                 image_column, teacher_infos, processing_class, eval_dataset)
        self.teacher_infos, self.teacher_norms, self.distill = rows.teacher_infos, rows.teacher_norms, rows.distill
        self.problem_type = rows.problem_type  # targets.model_problem_type

        super().__init__(model=model, args=args, train_dataset=self.rows.dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, **kwargs)
        # Both loss terms are per-batch means: let Trainer divide by the accumulation steps, and don't let it
        # rescale a classification loss by the token count across devices.
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False
        self.data_collator = TeacherFeatureCollator(self.data_collator)
        self.feature_capture = StudentFeatureCapture(model, args.student_feature_module, args.student_feature_point)
        self.transfer_loss = self._build_transfer_loss()
        self.teacher_weights = self._teacher_weights()
        self._transfer_group_added = False
        self._metrics = defaultdict(list)
        self.add_callback(ZeroTransferGrads(self))
        self.stall_detector = StallDetector(self)  # warns when beta * transfer holds the task loss at the prior
        self.add_callback(self.stall_detector)
        self.add_callback(OptionsRecord(self))  # hf_aft_options.json in each checkpoint, checked on resume

    def _build_transfer_loss(self):
        if self.args.transfer == "none":
            return None
        student_dim = feature_dim(self.feature_capture.module)
        if self.args.transfer == "kd" and student_dim is None:
            raise AFTError(f"transfer='kd' needs the width of {self.feature_capture.name!r}: point "
                           "student_feature_module at an nn.Linear.")
        dims = [info.dim for info in self.teacher_infos]
        return build_transfer_loss(self.args.transfer, dims, student_dim, self.args.kernel,
                                   self.args.learn_scales).to(self.args.device)

    def _teacher_weights(self) -> torch.Tensor | None:
        """balance_teachers: one weight per feature dimension, 1 / (its teacher's RMS centred norm)."""
        if self.transfer_loss is None or not self.args.balance_teachers:
            return None
        pairs = zip(self.teacher_infos, self.teacher_norms, strict=True)
        return torch.cat([torch.full((info.dim,), 1.0 / norm if norm > 0 else 1.0)
                          for info, norm in pairs]).to(self.args.device)

    # ---- data ----
    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        self._signature_columns += [column for column in (FEATURES_COLUMN, TARGETS_COLUMN, WORD_POSITIONS,
                                                          self.image_column)  # images: for the collator
                                    if column and column not in self._signature_columns]

    def _get_train_sampler(self, train_dataset=None):
        return self.rows.mixed_sampler(self.args) or super()._get_train_sampler(train_dataset)

    # ---- optimisation ----
    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        params = [p for p in self.transfer_loss.parameters() if p.requires_grad] if self.transfer_loss else []
        if params and not self._transfer_group_added:
            optimizer.add_param_group({"params": params, "lr": self.args.scales_learning_rate, "weight_decay": 0.0})
            self._transfer_group_added = True
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        teacher_features = inputs.pop(FEATURES_COLUMN, None)
        targets = inputs.pop(TARGETS_COLUMN, None)
        positions = inputs.pop(WORD_POSITIONS, None)  # token classification: one vector per word
        smoothing = self.args.label_smoothing_factor  # as Trainer's LabelSmoother, in training and evaluation
        labels = inputs.pop("labels", None) if model.training and self.rows.n_unlabeled or smoothing else None
        outputs = model(**inputs)
        own = labels is None  # the student's own loss, else that of the labelled rows of a mixed batch
        task_loss = (outputs["loss"] if isinstance(outputs, dict) else outputs[0]) if own else labelled_loss(
            outputs["logits"], labels, self.accelerator, self.problem_type, smoothing)
        student_features = self.feature_capture.pop(keep_tokens=positions is not None)
        loss = task_loss
        if model.training:
            terms = {"task_loss": task_loss}
            if self.transfer_loss is not None:
                if positions is not None and teacher_features is not None:
                    student_features, teacher_features = word_pairs(student_features, positions, teacher_features)
                terms["transfer_loss"] = self._transfer_term(student_features, teacher_features, positions is not None)
                loss = task_loss + self.args.beta * terms["transfer_loss"]
            if targets is not None:
                logits = outputs["logits"] if isinstance(outputs, dict) else outputs[1]
                terms["distill_loss"] = distill_term(logits, targets, positions, self.args.distill_temperature,
                                                     self.problem_type)
                loss = loss + self.args.distill_weight * terms["distill_loss"]
            check_finite_loss(terms, self.state.global_step + 1, self.args.learning_rate, self.args.beta,
                              self._all_finite if self.accelerator.num_processes > 1 else None,
                              (self.args.distill_temperature, self.args.distill_weight))
            for name, value in terms.items():
                self._metrics[name].append(value.detach())
        return (loss, outputs) if return_outputs else loss

    def _transfer_term(self, student_features: torch.Tensor, teacher_features: torch.Tensor | None,
                       words: bool = False) -> torch.Tensor:
        if teacher_features is None:
            raise AFTError(f"a training batch has no {FEATURES_COLUMN!r}: keep that column in the dataset.")
        teacher_features = teacher_features.to(student_features.device)
        if self.teacher_weights is not None:
            teacher_features = teacher_features * self.teacher_weights
        if self.args.kernel_scope == "global" and self.args.transfer in ("aft", "rkd"):
            # One kernel over the global batch on every process (see distributed.py for the gradients).
            student_features = gather_with_grad(student_features)
            teacher_features = gather(teacher_features)
        if words:  # token classification: the same words on every process (word_batches.py)
            return word_transfer(self.transfer_loss, student_features, teacher_features,
                                 self.args.transfer in ("aft", "rkd"), self.args.seed, self.state.global_step)
        return self.transfer_loss(student_features, teacher_features)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        # The transfer loss's parameters live outside the DDP-wrapped student: average their gradients by hand.
        if self.transfer_loss is not None and self.accelerator.num_processes > 1:
            for param in self.transfer_loss.parameters():
                if param.grad is not None:
                    torch.distributed.all_reduce(param.grad, op=torch.distributed.ReduceOp.AVG)
        return loss

    # ---- logging ----
    def latest_loss_terms(self) -> tuple[float | None, float | None]:
        """Last batch's task, transfer loss (before beta) for on_step_end; None without one, after a logging step."""
        last = {key: values[-1].item() for key, values in self._metrics.items() if values}
        return last.get("task_loss"), last.get("transfer_loss")

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._metrics:  # a training log: add the loss terms since the last one
            for key, values in self._metrics.items():
                mean = torch.stack(values).float().mean()
                logs[key] = self.accelerator.reduce(mean.to(self.args.device), reduction="mean").item()
            self._metrics.clear()
            logs.update({f"scales/{name}/{stat}": value for name, stats in self.scale_summary().items()
                         for stat, value in stats.items()})
        super().log(logs, start_time)

    def terms_summary(self) -> dict:
        """What trained the student besides the labels (training_rows.terms_summary)."""
        return terms_summary(self.args, self.rows, self.state.global_step, self.args.train_batch_size
                             * self.args.gradient_accumulation_steps * self.accelerator.num_processes)

    def scale_summary(self) -> dict[str, dict[str, float]]:
        """Per teacher: the mean learned scale and the fraction of dimensions scaled above 0.5 (AFT only)."""
        if not isinstance(self.transfer_loss, AdaptiveKernelLoss):
            return {}
        return self.transfer_loss.scale_summary(self.teacher_names)

    @property
    def teacher_names(self) -> list[str]:
        """Short, unique names of the teachers, as logs, scales and the card show them."""
        return display_names([info.name for info in self.teacher_infos])

    # ---- saving ----
    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        super()._save(output_dir, state_dict)
        output_dir = output_dir or self.args.output_dir
        if self.args.should_save and (self.transfer_loss is not None or self.distill != "none"):
            save_transfer_files(output_dir, self.transfer_loss, {
                "transfer": self.args.transfer, "beta": self.args.beta, "kernel": self.args.kernel,
                "kernel_scope": self.args.kernel_scope, "processes": self.args.world_size,
                "balance_teachers": self.args.balance_teachers, "teachers": [vars(i) for i in self.teacher_infos],
                "teacher_rms_norms": dict(zip(self.teacher_names, self.teacher_norms, strict=True)),
                "scales": self.scale_summary(), **self.terms_summary()})
        if self.args.should_save:
            share_like_other_files(output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        check_resumed_trainer(resume_from_checkpoint, self)
        check_checkpoint_files(resume_from_checkpoint)
        try:
            super()._load_from_checkpoint(resume_from_checkpoint, model)
        except AFTError:
            raise
        except Exception as error:  # a truncated or damaged weights file
            raise AFTError(f"cannot resume from {resume_from_checkpoint!r}: {first_line(error)}. Use another "
                           "checkpoint.") from error
        restore_after_resume(resume_from_checkpoint, model or self.model, self.transfer_loss)

    def _load_best_model(self) -> None:
        super()._load_best_model()  # the raw load of a resume (outputs.reload_renamed_weights), and that step's scales
        restore_after_resume(self.state.best_model_checkpoint, self.model, self.transfer_loss)

    # ---- card and Hub ----
    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None,
                          baseline_results: dict | None = None, **kwargs) -> None:
        """Write the student's model card (README.md) into the output dir: teachers, transfer, scales, results (beside
        a plain fine-tuning run's `baseline_results`), the data (`dataset_name`; the pool's `unlabeled_data`)."""
        if self.is_world_process_zero():
            os.makedirs(self.args.output_dir, exist_ok=True)
            facts = card_facts_from_trainer(self, model_name, dataset_name or kwargs.get("dataset"), baseline_results,
                                            kwargs.get("beta_search"), kwargs.get("eval_split"),
                                            kwargs.get("unlabeled_data"))
            write_model_card(self.args.output_dir, facts)

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """The repo is created when the finished student is pushed (`push_to_hub`), not before training; a Hub
        that cannot be reached is refused now, not after training."""
        check_can_push(self.args.hub_model_id, "call `hf_aft.hub.push_run(output_dir, repo_id)` after training")
        self.hub_model_id = self.args.hub_model_id
        self.push_in_progress = None

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Checkpoints are not pushed: only the finished student goes up (checkpoints hold training_args.bin)."""

    def hyperparameter_search(self, *args, **kwargs):
        raise AFTError(NO_HYPERPARAMETER_SEARCH)  # trainer_inputs.py: why, and what to do instead

    def push_to_hub(self, commit_message: str | None = "End of training", blocking: bool = True,
                    token: str | None = None, revision: str | None = None, private: bool | None = None, **kwargs):
        """Save the student, write its card (`kwargs` go to `create_model_card`) and push the output dir to
        `args.hub_model_id` with `hf_aft.hub.push_run` (what goes up, and what never does, is listed there).
        Always blocking; returns the commit URL."""
        self.save_model(_internal_call=True)
        if not self.is_world_process_zero():
            return None
        self.create_model_card(**kwargs)
        return push_run(self.args.output_dir, self.args.hub_model_id, token=token or self.args.hub_token,
                        private=self.args.hub_private_repo if private is None else private,
                        revision=revision or self.args.hub_revision, commit_message=commit_message)
