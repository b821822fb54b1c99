"""Training configuration: every knob with its default and what it means (`sftline train --help`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sftline.contract.metrics import checked_name


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    rank: int = Field(default=16, ge=1)
    """LoRA rank r."""
    alpha: int = Field(default=32, ge=1)
    """LoRA alpha; the update is scaled by alpha / rank."""
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """Module names to adapt; `all-linear`: every linear layer of the decoder (not the LM head)."""
    merge: bool = True
    """Export merged weights (a plain HF folder) besides the adapter."""


REPORTING_ONLY = frozenset({"report_to"})
"""Settings that say where a run is shown, not what it trains: outside the train station's key
and free to change on a resume."""


class TrainConfig(BaseModel):
    """One training run. Defaults follow common SFT practice for small models."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    base: str
    """Base model: smollm2-135m-instruct, minilm-l6, or a name from `sftline models base add`."""
    data: str
    """Training data: NAME or NAME@VERSION."""
    method: Literal["lora", "full"] = "lora"
    """LoRA adapters on every linear layer, or full fine-tuning of every weight. Classifiers
    default to full (the encoders are small; see sftline.train.recipes)."""
    task: Literal["chat", "classify"] | None = None
    """Default: the contract's task."""
    epochs: float = Field(default=1.0, gt=0)
    """Passes over the data (fractions allowed). Classifiers default to enough passes for about
    2,000 optimizer steps, at least 3 and at most 10 (sftline.train.recipes)."""
    max_steps: int | None = Field(default=None, ge=1)
    """Optimizer steps; overrides epochs."""
    lr: float | None = Field(default=None, gt=0)
    """Peak learning rate; default 2e-4 for LoRA, 2e-5 for full fine-tuning (classifiers: 2e-4
    full, 5e-4 LoRA)."""
    step_tokens: int = Field(default=8192, ge=16)
    """Tokens of examples per optimizer step (per process): micro-batches x accumulation. Fixed
    whatever the machine, so steps and losses do not depend on it."""
    activation_memory_mb: int = Field(default=1536, ge=64)
    """Most memory (MiB) one micro-batch's activations may take: the default micro-batch holds as
    many tokens as the model's shape allows within it (sftline.train.memory), and accumulation
    fills step_tokens. It never looks at the machine's memory."""
    batch_tokens: int | None = Field(default=None, ge=16)
    """Tokens per micro-batch (packed rows, padding only at row ends); default: from
    activation_memory_mb. Set, it replaces step_tokens: one micro-batch a step unless grad_accum."""
    row_tokens: int = Field(default=1024, ge=16)
    """Most tokens per packed row (never more than a micro-batch): a micro-batch is several rows."""
    prefix_sharing: bool = True
    """Lay out the tokens that most examples start with (template header, system prompt) once
    per packed row, with every example attending to them: the same loss and gradients, fewer
    tokens computed. Needs sdpa or eager attention (a 4D mask); see sftline.train.rows."""
    batch_size: int = Field(default=32, ge=1)
    """Classifiers: examples per optimizer step, drawn at random (chat trains by tokens:
    step_tokens)."""
    grad_accum: int | None = Field(default=None, ge=1)
    """Micro-batches per optimizer step; default: as many as fill step_tokens (1 with batch_tokens)."""
    weight_decay: float = Field(default=0.0, ge=0)
    """AdamW weight decay (classifiers: 0.01)."""
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    """Share of the optimizer steps spent warming the learning rate up from 0 (classifiers: 0.1)."""
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """Learning-rate decay after warmup."""
    max_grad_norm: float = Field(default=1.0, gt=0)
    """Gradients are clipped to this global norm."""
    pooling: Literal["mean", "cls"] = "mean"
    """Classifiers: what the head reads: the mean of the encoder's token vectors (how sentence
    encoders such as all-MiniLM-L6-v2 were trained), or the first token's ([CLS]; BGE-style)."""
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    """Classifiers: cross-entropy against targets smoothed by this much (the holdout's loss is
    measured without it)."""
    holdout_share: float = Field(default=0.1, ge=0, lt=1)
    """Classifiers without eval_on: this share of the training data, seeded and stratified by
    label, is held out for early stopping, the temperature and the abstention operating point."""
    false_abstention: float = Field(default=0.01, ge=0, lt=1)
    """Classifiers with an abstention label: the share of the holdout's in-scope examples the
    abstention score may turn away; the threshold is set there and stored with the model."""
    abstention_score: Literal["auto", "msp", "energy", "mahalanobis"] = "auto"
    """The out-of-scope score (sftline.evals.abstention): auto picks the highest AUROC on the
    holdout when it has at least 10 abstention examples, else msp."""
    lora: LoraSettings = LoraSettings()
    max_length: int | None = Field(default=None, ge=8)
    """Longest rendered example in tokens; default the contract's limits.max_length."""
    length_policy: Literal["drop", "truncate-prompt"] = "drop"
    """What happens to longer examples; counts are always reported."""
    eval_on: str | None = None
    """A holdout version evaluated during training (loss until the eval station exists)."""
    eval_every: int = Field(default=50, ge=1)
    """Optimizer steps between evaluations."""
    eval_metric: str = "loss"
    """What picks the best checkpoint and drives early stopping: `loss` (the holdout's loss), or a
    behaviour metric the eval station measures on the holdout by classifying or generating:
    accuracy, macro_f1, in_scope_accuracy, abstention_recall, label_compliance, schema_compliance,
    ece, ... (sftline.contract.metrics lists them, with the direction in which each improves; lower
    is better for loss, ece, latency and lengths). An unknown name is a configuration error."""
    eval_max_new_tokens: int | None = Field(default=None, ge=1)
    """Generation limit when a chat model's holdout behaviour is measured (default: the contract's
    limits.max_target_tokens)."""
    early_stop_patience: int | None = Field(default=None, ge=1)
    """Stop after this many evaluations without improvement; the best checkpoint is kept."""
    save_every: int = Field(default=50, ge=1)
    """Optimizer steps between checkpoints (resume points)."""
    teacher: str | None = None
    """Distil from this model (same tokenizer): its logits on the trained tokens join the loss."""
    distill_alpha: float = Field(default=0.5, ge=0, le=1)
    """Weight of cross-entropy against the labels; 1 - alpha goes to KL with the teacher."""
    distill_temperature: float = Field(default=2.0, gt=0)
    """Softening temperature of both distributions in the KL term."""
    parallel: Literal["auto", "ddp", "fsdp"] = "auto"
    """Under torchrun / accelerate launch: ddp replicates the model on every rank; fsdp shards
    parameters, gradients and optimizer state (FSDP2, one unit per transformer block); auto is
    fsdp for full fine-tuning (or `accelerate launch --use_fsdp`), ddp otherwise."""
    seed: int = 0
    """Seed of every random choice (initialisation, order, dropout); recorded."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Weights and compute: float32, or bfloat16 (GPU)."""
    report_to: list[Literal["tensorboard", "mlflow"]] = []
    """Also send the run's config, per-step metrics and final evaluations to TensorBoard
    (.sftline/runs/RUN/tensorboard, or $SFTLINE_TENSORBOARD_DIR/RUN) and/or MLflow
    (MLFLOW_TRACKING_URI; the project's name is the experiment). Repeat for both; needs
    `pip install 'sftline[tracking]'`. A copy for viewing: the record keeps every metric, and a
    tracker that fails mid-run is dropped with a warning. Not part of the run's key."""

    @field_validator("eval_metric")
    @classmethod
    def _known_metric(cls, name: str) -> str:
        return checked_name(name)

    @property
    def micro_tokens(self) -> int:
        """Tokens per micro-batch: batch_tokens, or before sftline.train.memory resolves it (no
        model shape to estimate from), a whole step."""
        return self.batch_tokens or self.step_tokens

    @property
    def accumulation(self) -> int:
        """Micro-batches per optimizer step: grad_accum, or one."""
        return self.grad_accum or 1

    @model_validator(mode="after")
    def _lr_default(self) -> TrainConfig:
        if self.lr is None:  # a default, not a choice: kept out of model_fields_set
            object.__setattr__(self, "lr", 2e-4 if self.method == "lora" else 2e-5)
        return self
