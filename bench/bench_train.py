"""Benchmark: LoRA SFT throughput and peak memory, TRL's SFTTrainer against sftline, gain by gain.

    OMP_WAIT_POLICY=PASSIVE python bench/bench_train.py --repeats 2  # 2 + 10 timed steps, ~1,024 tokens
    OMP_WAIT_POLICY=PASSIVE python bench/bench_train.py --quick      # smoke test: 1 + 1 steps, ~256 tokens
    python bench/bench_train.py --steps 6 --warmup-steps 2 --threads 1 --cache /tmp/models

Needs TRL: `pip install -e '.[bench]'`.

Six methods, a ladder in which every rung adds one thing to the one before it:

    (a) TRL default: SFTTrainer, padded batches (right padding to the batch's longest example).
    (b) TRL padding-free: the same examples per step concatenated into one row (`padding_free=True`:
        position_ids restart per sequence, no attention_mask), TRL's packed layout.
    (c) sftline, packing only: sftline's loop and rows (`prefix_sharing=False`: every sequence
        whole, kept apart by position_ids, as in (b)), with the LM head computed at EVERY position
        (`sftline.train.tasks.loss_sum` is replaced here by a loss that asks for all logits, as
        TRL's head does on CPU) and peft's plain `nn.Dropout` (`use_bit_dropout` is replaced by a
        no-op).
    (d) + the LM head at trained positions only (sftline's `loss_sum`: `logits_to_keep` = the
        positions with a label).
    (e) + shared-prefix rows (`prefix_sharing=True`): the tokens every example starts with (the
        template header, SmolLM2's default system prompt and the opening of the user turn, 24 of a
        query's ~45 tokens) are laid out once per row, a 4D mask lets each sequence attend to them
        (`sftline.train.rows`); same loss and gradients, about half the tokens computed.
    (f) + BitDropout: LoRA dropout masks from 16-bit slices of 64-bit draws = sftline's default.

Every rung checks, in its own process, that its toggles took effect, and fails otherwise: how many
times the (replaced or original) loss ran, how many positions the LM head computed against the
positions of the rows (all of them in (c), the trained ones after), the count of BitDropout and of
`nn.Dropout` modules in the LoRA layers, and the examples behind a shared prefix. The table prints
the head's share of positions and the tokens computed per example token beside each rung.

Identical step contents. The parent process lays the steps out once: sftline's own micro-batch
plan over the examples (first-fit-decreasing bins of at most --batch-tokens tokens, in the seeded
order of `micro_batch_plan`), written as one list of example indices per optimizer step to a file
every child reads. sftline's rungs train on that plan (each child checks that its plan gives the
same groups: prefix sharing changes how a bin is computed, never what it holds); TRL gets the same
groups in the same order through a batch sampler (`get_train_dataloader` is overridden, nothing
else of the trainer), so in step k every method trains on the same examples, one optimizer step
per group, no accumulation. The children report the non-padding tokens of every step, and the
parent fails unless they are the same list on every side.

Same base model (SmolLM2-135M-Instruct, float32, sdpa attention), same CLINC150 chats (user:
query -> assistant: intent, the model's chat template, its default system prompt), LoRA r16 alpha
32 dropout 0.05 on every linear layer, lr 2e-4 cosine with sftline's warmup (3% of the steps),
AdamW (fused on both sides), clip 1.0, loss on the answer only. SmolLM2's template has no
`{% generation %}` markers, so TRL gets the data in its prompt-completion form (prompt = [user],
completion = [assistant]) and trains the completion alone (`completion_only_loss`). Two TRL
defaults are overridden to match sftline: `gradient_checkpointing=False` and `bf16=False`. TRL
keeps its fused LM head, which on CPU scores every position in chunks (it compacts to the trained
positions only on Triton devices) and also computes each position's entropy and top-1 for its logs.
TRL (b) runs with `max_length=None`, which TRL requires for padding-free without its own packing (no
example comes near TRL's default 1,024).

Each method runs in a process of its own, so its peak resident memory (VmHWM, read when training
ends, before the logits checks) is its own; every process imports the same libraries. With
--repeats N the methods run N times, the order reversed every other repeat; the table shows
medians. Throughput = non-padding tokens of the examples in the timed steps (a shared prefix
counted in every example that has it, as TRL counts it) / wall time from the end of the last
warm-up step to the end of the last timed step (data loading, forward, backward, clipping and the
optimizer step inside; checkpoints not: sftline writes only after the last step, TRL saves
nothing). "CPU s / s" is a process's CPU time over that window divided by its wall time: the
cores it actually got (~1.9 of 2 when the machine is quiet); compare tokens/s only where it is
similar. "tokens / CPU s" divides the same tokens by that CPU time: steadier when other processes
take cores from some runs and not others (it does not count the cost of a second thread's poorer
scaling, so it flatters runs that got fewer cores a little).

TRL documents padding-free as FlashAttention-only. There is no FlashAttention on CPU, so the script
checks what the sdpa path does with the padding-free row TRL trained on in its first step: it
compares the row's logits with those of its sequences run one at a time, and, as a control, with
one causal mask across the row. The same check runs on one of sftline's shared-prefix rows (the
prefix's logits and every suffix's). With transformers 5.x the row is confined per sequence: TRL's
collator passes position_ids and no attention_mask, TRL sets use_cache=False, and masking_utils
builds a block-diagonal mask from the position restarts (the mechanism sftline relies on).

On the project's 2-core machine set OMP_WAIT_POLICY=PASSIVE (or --threads 1): with torch's default
of 2 threads and OpenMP's spin-waiting, every small op costs milliseconds, which makes a forward
pass ~3x slower and adds a per-op cost that distorts the comparison. The header prints the thread
count and the policy.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import sftline.train.packing as packing
import sftline.train.tasks as tasks
import sftline.train.trainer as trainer_module
from sftline.data.example import Example, Provenance
from sftline.models import materialise_embedded
from sftline.train.config import LoraSettings, TrainConfig
from sftline.train.dropout import BitDropout
from sftline.train.packing import IGNORE_INDEX, batch_logits
from sftline.train.trainer import build_model, micro_batch_plan, prepare, train_loop

try:
    import datasets
    import transformers
    from datasets import Dataset
    from peft import LoraConfig
    from torch.utils.data import DataLoader
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer
    from trl import __version__ as trl_version
except ImportError as exc:  # pragma: no cover - depends on the environment
    sys.exit(f"bench_train needs TRL ({exc}); run: pip install -e '.[bench]'")

ROOT = Path(__file__).resolve().parents[1]
CLINC = ROOT / "examples" / "clinc150" / "data_full.json"
BASE = "smollm2-135m-instruct"
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "sftline-bench-cache" / "models"  # .bench-cache is not ignored
MAX_LENGTH = 1024  # TRL's default max_length; no CLINC150 example comes near it
LORA = LoraSettings(rank=16, alpha=32, dropout=0.05)
LR = 2e-4

# The ladder, in order: (key, label). Each rung adds one thing to the one before.
METHODS: list[tuple[str, str]] = [
    ("trl-padded", "(a) TRL default (padded batches)"),
    ("trl-padding-free", "(b) TRL padding_free (one packed row)"),
    ("sft-packing", "(c) sftline packing only (head everywhere, nn.Dropout)"),
    ("sft-head", "(d) + LM head at trained positions"),
    ("sft-prefix", "(e) + shared-prefix rows"),
    ("sft-default", "(f) + BitDropout = sftline default"),
]
LABELS = dict(METHODS)
# What each sftline rung turns on: (head at trained positions only, prefix sharing, BitDropout).
SFTLINE_RUNGS = {
    "sft-packing": (False, False, False),
    "sft-head": (True, False, False),
    "sft-prefix": (True, True, False),
    "sft-default": (True, True, True),
}


def sftline_warmup_steps(total: int) -> int:
    """sftline's warm-up (round(3% of the steps)); TRL would take ceil of a ratio."""
    return round(TrainConfig.model_fields["warmup_ratio"].default * total)


def stamp() -> tuple[float, float]:
    """(wall, process CPU) seconds now."""
    return time.perf_counter(), time.process_time()


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    import resource  # not Linux: ru_maxrss (KiB on Linux, bytes on macOS)

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def clinc_chat_examples(n: int, seed: int) -> list[Example]:
    """`n` CLINC150 train pairs (seeded sample) as user -> assistant conversations."""
    rows = json.loads(CLINC.read_text())["train"]
    picked = sorted(random.Random(seed).sample(range(len(rows)), min(n, len(rows))))
    provenance = Provenance("data_full.json", "0" * 64, "pairs")
    return [
        Example(
            id=f"c{i}",
            provenance=provenance,
            messages=[
                {"role": "user", "content": rows[i][0]},
                {"role": "assistant", "content": rows[i][1]},
            ],
        )
        for i in picked
    ]


def pool_size(args: argparse.Namespace) -> int:
    # ~4x the tokens all steps need (about 45 tokens per rendered example): no method wraps around
    # to a second epoch, and the one part-filled bin is rarely among the timed steps.
    return math.ceil(4 * (args.warmup_steps + args.steps) * args.batch_tokens / 45)


def train_config(args: argparse.Namespace, *, prefix_sharing: bool = False) -> TrainConfig:
    return TrainConfig(
        base=BASE,
        data="clinc150",
        method="lora",
        batch_tokens=args.batch_tokens,
        grad_accum=1,
        max_steps=args.warmup_steps + args.steps,
        lr=LR,
        lora=LORA,
        prefix_sharing=prefix_sharing,
        save_every=10**9,  # no checkpoint inside the timed steps (the loop still writes one at the end)
        seed=args.seed,
    )


def step_groups(data: Any, config: TrainConfig, examples: list[Example]) -> list[list[int]]:
    """The examples (indices into `examples`) of every optimizer step of sftline's plan, in order."""
    position = {e.id: i for i, e in enumerate(examples)}
    groups = []
    for b in micro_batch_plan(len(data.bins), config):
        members = [m for r in data.bins[b] for m in data.rows[r].members]
        groups.append(sorted(position[data.sequences[m].example_id] for m in members))
    return groups


# --- sftline's rungs ---------------------------------------------------------------------------


class Toggles:
    """Counts what the sftline rungs' replaced functions did, so a toggle that does not take
    effect fails the run instead of measuring the same thing twice."""

    def __init__(self) -> None:
        self.loss_calls = 0
        self.head_positions = 0
        """Positions the LM head computed (logits' second dimension, summed over rows)."""
        self.row_positions = 0
        """Positions of the rows those logits came from."""
        self.bit_dropout_calls = 0


def install_toggles(head_trained_only: bool, bit_dropout: bool) -> Toggles:
    counts = Toggles()
    original_batch_logits = packing.batch_logits
    original_loss_sum = tasks.loss_sum
    original_bit_dropout = trainer_module.use_bit_dropout

    def counted_batch_logits(model: Any, batch: Any, positions: torch.Tensor | None = None) -> torch.Tensor:
        logits = original_batch_logits(model, batch, positions)
        counts.head_positions += logits.shape[0] * logits.shape[1]
        counts.row_positions += batch.input_ids.numel()
        return logits

    def loss_every_position(model: Any, batch: Any) -> tuple[torch.Tensor, int]:
        """sftline's loss with the LM head at every position (as a plain HF model computes it)."""
        counts.loss_calls += 1
        logits = packing.batch_logits(model, batch)
        trained = batch.labels != IGNORE_INDEX
        total = F.cross_entropy(logits[trained].float(), batch.labels[trained], reduction="sum")
        return total, batch.n_trained_tokens

    def loss_trained_positions(model: Any, batch: Any) -> tuple[torch.Tensor, int]:
        counts.loss_calls += 1
        return original_loss_sum(model, batch)  # type: ignore[no-any-return]

    def bit_dropout_counted(model: Any) -> int:
        counts.bit_dropout_calls += 1
        return original_bit_dropout(model) if bit_dropout else 0

    packing.batch_logits = counted_batch_logits  # what packing.loss_sum calls
    tasks.loss_sum = loss_trained_positions if head_trained_only else loss_every_position  # ChatData.loss_sum
    trainer_module.use_bit_dropout = bit_dropout_counted  # build_model
    return counts


def dropout_modules(model: torch.nn.Module) -> tuple[int, int]:
    """(BitDropout, nn.Dropout with p > 0) modules in the model's LoRA layers."""
    bits = plain = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, torch.nn.ModuleDict):
            for dropout in dropouts.values():
                bits += isinstance(dropout, BitDropout)
                plain += isinstance(dropout, torch.nn.Dropout) and dropout.p > 0
    return bits, plain


def run_sftline(
    method: str, model_path: Path, tokenizer: Any, examples: list[Example], plan: dict[str, Any], args: Any
) -> dict[str, Any]:
    head_trained_only, prefix_sharing, bit_dropout = SFTLINE_RUNGS[method]
    counts = install_toggles(head_trained_only, bit_dropout)
    config = train_config(args, prefix_sharing=prefix_sharing)
    data = prepare(tokenizer, examples, config, system_prompt=None, max_length=MAX_LENGTH)
    if step_groups(data, config, examples) != plan["groups"]:
        raise RuntimeError(f"{method}: sftline's plan differs from the benchmark's step groups")
    model = build_model(model_path, config, torch.device("cpu"))
    bits, plain = dropout_modules(model)
    ends: dict[int, tuple[float, float]] = {}

    def on_step(event: dict[str, Any]) -> None:
        ends[event["step"]] = stamp()

    with tempfile.TemporaryDirectory() as checkpoints:
        result = train_loop(
            model, data, config, checkpoints=Path(checkpoints), device=torch.device("cpu"), progress=on_step
        )
    peak = peak_rss_mb()
    total = config.max_steps or 0
    plan_bins = micro_batch_plan(len(data.bins), config)
    step_tokens = [data.n_tokens(data.collate(data.bins[b])) for b in plan_bins]
    if sum(step_tokens) != result.state.tokens:
        raise RuntimeError("sftline's token count differs from its micro-batch plan; the plan has changed")
    shared = int(data.layout["shared_prefix_examples"])
    # The toggles, checked: a rung that silently measured the same thing as another fails here.
    problems = []
    if counts.loss_calls != total:
        problems.append(f"the benchmark's loss ran {counts.loss_calls} times in {total} steps")
    if counts.bit_dropout_calls != 1:
        problems.append(f"use_bit_dropout was called {counts.bit_dropout_calls} times, not once")
    if bit_dropout != (bits > 0) or bit_dropout == (plain > 0):
        problems.append(f"{bits} BitDropout and {plain} nn.Dropout modules")
    everywhere = counts.head_positions == counts.row_positions
    if head_trained_only == everywhere:
        problems.append(f"the LM head ran at {counts.head_positions:,} of {counts.row_positions:,} positions")
    if prefix_sharing != (shared > 0):
        problems.append(f"{shared} examples behind a shared prefix")
    if problems:
        raise RuntimeError(f"{method}: a toggle did not take effect: {'; '.join(problems)}")
    out: dict[str, Any] = {
        "step_tokens": step_tokens,
        "ends": ends,
        "peak_mb": peak,
        "toggles": {
            "head_positions": counts.head_positions,
            "row_positions": counts.row_positions,
            "bit_dropout_modules": bits,
            "dropout_modules": plain,
            "shared_prefix_examples": shared,
            "computed_tokens": result.state.computed_tokens,
            "example_tokens": result.state.tokens,
        },
        "layout": data.layout,
    }
    if method == "sft-default":
        out["sftline_leak"] = sftline_leak_check(model, data, data.bins[plan_bins[0]][0])
    return out


@torch.no_grad()
def sftline_leak_check(model: Any, data: Any, row: int) -> float:
    """Largest |logit difference| between one of sftline's rows (its shared prefix included) and
    its sequences run one at a time; the row goes through `batch_logits`, as in training."""
    was_training = model.training
    model.eval()
    packed = data.rows[row]
    logits = batch_logits(model, data.collate_rows([packed]))[0]
    prefix, offset, largest = packed.prefix, packed.prefix, 0.0
    for member in packed.members:
        ids = data.sequences[member].input_ids
        alone = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
        suffix = len(ids) - prefix
        largest = max(
            largest,
            float((logits[:prefix] - alone[:prefix]).abs().max()) if prefix else 0.0,
            float((logits[offset : offset + suffix] - alone[prefix:]).abs().max()),
        )
        offset += suffix
    model.train(was_training)
    return largest


# --- TRL's rungs -------------------------------------------------------------------------------


class _StepClock(TrainerCallback):  # type: ignore[misc]
    """Wall and CPU time at the end of every optimizer step."""

    def __init__(self) -> None:
        self.ends: dict[int, tuple[float, float]] = {}

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.ends[state.global_step] = stamp()


class _GroupedSFTTrainer(SFTTrainer):  # type: ignore[misc]
    """SFTTrainer fed fixed groups of examples, one group per optimizer step, in order; it records
    the non-padding tokens and the sequences of every micro-batch, and its first one."""

    def __init__(self, *args: Any, groups: list[list[int]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.groups = groups
        self.step_tokens: list[int] = []
        self.step_sequences: list[int] = []
        self.first_inputs: dict[str, Any] | None = None

    def get_train_dataloader(self) -> Any:
        dataset = self._remove_unused_columns(self.train_dataset, description="training")
        loader = DataLoader(dataset, batch_sampler=self.groups, collate_fn=self.data_collator)
        return self.accelerator.prepare(loader)

    def training_step(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if self.first_inputs is None:
            self.first_inputs = {k: v.clone() if torch.is_tensor(v) else v for k, v in inputs.items()}
        if "attention_mask" in inputs:
            self.step_tokens.append(int(inputs["attention_mask"].sum()))
            self.step_sequences.append(int(inputs["input_ids"].shape[0]))
        else:  # padding-free: one flattened row, nothing padded (pad_to_multiple_of is None on CPU)
            self.step_tokens.append(int(inputs["input_ids"].numel()))
            self.step_sequences.append(int((inputs["position_ids"] == 0).sum()))
        return super().training_step(model, inputs, *args, **kwargs)


def run_trl(
    method: str, model_path: Path, tokenizer: Any, examples: list[Example], plan: dict[str, Any], args: Any
) -> dict[str, Any]:
    padding_free = method == "trl-padding-free"
    groups: list[list[int]] = plan["groups"]
    dataset = Dataset.from_list(
        [{"prompt": e.messages[:1], "completion": e.messages[1:]} for e in examples]  # type: ignore[index]
    )
    total = args.warmup_steps + args.steps
    with tempfile.TemporaryDirectory() as output_dir:
        config = SFTConfig(
            output_dir=output_dir,
            max_steps=total,
            # Unused (the batch sampler gives the groups); the largest group keeps TRL's checks quiet.
            per_device_train_batch_size=max(len(g) for g in groups),
            gradient_accumulation_steps=1,
            learning_rate=LR,
            lr_scheduler_type="cosine",
            warmup_steps=sftline_warmup_steps(total),
            weight_decay=0.0,
            max_grad_norm=1.0,
            max_length=None if padding_free else MAX_LENGTH,
            padding_free=padding_free,
            gradient_checkpointing=False,
            bf16=False,
            seed=args.seed,
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
        )
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32, local_files_only=True)
        peft_config = LoraConfig(
            r=LORA.rank,
            lora_alpha=LORA.alpha,
            lora_dropout=LORA.dropout,
            target_modules=LORA.target_modules,
            task_type="CAUSAL_LM",
        )
        clock = _StepClock()
        trainer = _GroupedSFTTrainer(
            model=model,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[clock],
            groups=groups[:total],
        )
        trainer.remove_callback(PrinterCallback)  # its end-of-training dict
        trainer.train()
    peak = peak_rss_mb()
    if trainer.step_sequences != [len(g) for g in groups[:total]]:
        raise RuntimeError(f"{method}: TRL's batches do not hold the benchmark's groups")
    bits, plain = dropout_modules(trainer.model)
    out: dict[str, Any] = {
        "step_tokens": trainer.step_tokens,
        "ends": clock.ends,
        "peak_mb": peak,
        "toggles": {"bit_dropout_modules": bits, "dropout_modules": plain},
    }
    if padding_free:
        # The padding-free row TRL trained on in its first step (position_ids, cu_seq_lens_*, no mask).
        row = trainer.first_inputs or {}
        out["trl_leak"] = leak_check(trainer.model, row)
        out["control_leak"] = leak_check(trainer.model, row, causal_row=True)
    return out


def _sequences(position_ids: torch.Tensor) -> list[tuple[int, int]]:
    """(start, end) of every sequence of a packed (1, T) row: positions restart at 0."""
    starts = (position_ids[0] == 0).nonzero().flatten().tolist()
    return list(zip(starts, [*starts[1:], position_ids.shape[1]], strict=True))


@torch.no_grad()
def leak_check(model: Any, batch: dict[str, Any], *, causal_row: bool = False) -> float:
    """Largest |logit difference| between a packed row and its sequences run one at a time.

    `batch`: the model inputs a trainer gives for one packed row (input_ids, position_ids and, for
    TRL, cu_seq_lens etc.); labels are dropped. Near 0: attention stays inside each sequence.
    `causal_row=True` runs the row with one causal mask across it instead: what a leak looks like.
    """
    was_training = model.training
    model.eval()
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "use_cache")}
    if causal_row:
        inputs = {"input_ids": inputs["input_ids"], "attention_mask": torch.ones_like(inputs["input_ids"])}
    row = model(**inputs, use_cache=False).logits[0]
    ids = batch["input_ids"]
    alone = torch.cat(
        [
            model(input_ids=ids[:, a:b], use_cache=False).logits[0]
            for a, b in _sequences(batch["position_ids"])
        ]
    )
    model.train(was_training)
    return float((row - alone).abs().max())


def _verdict(difference: float) -> str:
    # float32 logits of the same tokens agree to ~1e-4 whatever the kernel; a leak moves them by units.
    return "attention confined per sequence" if difference < 1e-2 else "sequences attend to each other"


# --- one method in its own process -------------------------------------------------------------


def quiet_libraries() -> None:
    # Library chatter (deprecation warnings raised inside TRL, dataset.map bars) would bury the table.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*pin_memory.*")
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def child(args: argparse.Namespace) -> int:
    """Train one method; print its measurement as one JSON line."""
    quiet_libraries()
    plan = json.loads(args.plan.read_text())
    model_path = Path(plan["model"])
    tokenizer: Any = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    examples = clinc_chat_examples(plan["n_examples"], args.seed)
    run = run_trl if args.child.startswith("trl") else run_sftline
    out = run(args.child, model_path, tokenizer, examples, plan, args)
    ends = out.pop("ends")
    total = args.warmup_steps + args.steps
    out.update(
        method=args.child,
        tokens=sum(out["step_tokens"][args.warmup_steps : total]),
        seconds=ends[total][0] - ends[args.warmup_steps][0],
        cpu_seconds=ends[total][1] - ends[args.warmup_steps][1],
        threads=torch.get_num_threads(),
    )
    print(json.dumps(out))
    return 0


# --- the parent: plan, repeats, table ----------------------------------------------------------


def make_plan(args: argparse.Namespace, model_path: Path, folder: Path) -> tuple[Path, dict[str, Any]]:
    """The steps' example groups (sftline's micro-batch plan), written once for every child."""
    tokenizer: Any = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    n = pool_size(args)
    examples = clinc_chat_examples(n, args.seed)
    config = train_config(args)
    data = prepare(tokenizer, examples, config, system_prompt=None, max_length=MAX_LENGTH)
    groups = step_groups(data, config, examples)
    lengths = {s.example_id: len(s.input_ids) for s in data.sequences}
    step_tokens = [sum(lengths[examples[i].id] for i in g) for g in groups]
    plan = {"model": str(model_path), "n_examples": n, "groups": groups, "step_tokens": step_tokens}
    path = folder / "plan.json"
    path.write_text(json.dumps(plan))
    all_lengths = list(lengths.values())
    print(
        f"data: {len(examples):,} CLINC150 train examples, {sum(all_lengths):,} tokens rendered, mean "
        f"{sum(all_lengths) / len(all_lengths):.1f}, max {max(all_lengths)}; {args.warmup_steps} untimed + "
        f"{args.steps} timed steps of {min(step_tokens):,}-{max(step_tokens):,} tokens "
        f"({min(map(len, groups))}-{max(map(len, groups))} examples), the same examples per step everywhere"
    )
    return path, plan


def run_child(method: str, plan_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--child", method, "--plan", str(plan_path),
        "--steps", str(args.steps), "--warmup-steps", str(args.warmup_steps),
        "--batch-tokens", str(args.batch_tokens), "--seed", str(args.seed),
    ]  # fmt: skip
    if args.threads:
        command += ["--threads", str(args.threads)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-4000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"{LABELS[method]} failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=None, help="timed optimizer steps per method (10)")
    parser.add_argument("--warmup-steps", type=int, default=None, help="untimed steps before them, >= 1 (2)")
    parser.add_argument("--batch-tokens", type=int, default=None, help="tokens per optimizer step (1024)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per method, order alternated (1)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 1 + 1 steps of 256 tokens, 1 repeat (unless set)"
    )
    parser.add_argument(
        "--methods", default=None, help="comma-separated subset of: " + ", ".join(k for k, _ in METHODS)
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="materialised base models")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=[k for k, _ in METHODS], help=argparse.SUPPRESS)
    parser.add_argument("--plan", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    defaults = {"steps": 1, "warmup_steps": 1, "batch_tokens": 256, "repeats": 1} if args.quick else {}
    for name, value in {"steps": 10, "warmup_steps": 2, "batch_tokens": 1024, "repeats": 1}.items():
        if getattr(args, name) is None:
            setattr(args, name, defaults.get(name, value))
    if args.warmup_steps < 1 or args.steps < 1 or args.repeats < 1:
        parser.error("--steps, --warmup-steps, --repeats: at least 1 (the clock starts at a step's end)")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        return child(args)
    methods = [k for k, _ in METHODS]
    if args.methods:
        methods = [m for m in methods if m in set(args.methods.split(","))]
        if len(methods) != len(set(args.methods.split(","))):
            parser.error(f"--methods: unknown name in {args.methods!r}")
    quiet_libraries()

    model = materialise_embedded(BASE, args.cache)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; TRL {trl_version}, transformers "
        f"{transformers.__version__}; float32, sdpa attention, LoRA r16 a32 dropout 0.05 all-linear, "
        "lr 2e-4 cosine"
    )
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    with tempfile.TemporaryDirectory() as folder:
        plan_path, plan = make_plan(args, model.path, Path(folder))
        for repeat in range(args.repeats):
            order = methods if repeat % 2 == 0 else methods[::-1]
            for method in order:
                started = time.perf_counter()
                r = run_child(method, plan_path, args)
                results[method].append(r)
                print(
                    f"repeat {repeat + 1}/{args.repeats} {LABELS[method]:58s} "
                    f"{r['tokens'] / r['seconds']:7.1f} tokens/s  peak {r['peak_mb']:7,.0f} MB  "
                    f"CPU s/s {r['cpu_seconds'] / r['seconds']:.2f}  ({time.perf_counter() - started:.0f} s)",
                    flush=True,
                )

    # Identical step contents: every run of every method trained the plan's tokens, step by step.
    total = args.warmup_steps + args.steps
    for method, runs in results.items():
        for r in runs:
            if r["step_tokens"] != plan["step_tokens"][:total]:
                raise SystemExit(
                    f"{LABELS[method]} trained other tokens per step than the plan: {r['step_tokens']} "
                    f"against {plan['step_tokens'][:total]}"
                )
    timed_tokens = sum(plan["step_tokens"][args.warmup_steps : total])
    print(
        f"\nevery method trained the same {total} steps, {sum(plan['step_tokens'][:total]):,} tokens "
        f"({timed_tokens:,} in the timed steps); medians of {args.repeats} run(s), order alternated:\n"
    )

    def median(value: Callable[[dict[str, Any]], float]) -> dict[str, float]:
        return {m: statistics.median(value(r) for r in runs) for m, runs in results.items()}

    speed = median(lambda r: r["tokens"] / r["seconds"])
    peak = median(lambda r: r["peak_mb"])
    cores = median(lambda r: r["cpu_seconds"] / r["seconds"])
    # Tokens per CPU second (all of a process's threads): what a method gets done with the cores it
    # was given, the steadier figure when other processes take cores from some runs and not others.
    per_cpu = median(lambda r: r["tokens"] / r["cpu_seconds"])
    base, cpu_base = speed.get("trl-padded"), per_cpu.get("trl-padded")
    print(
        "| rung | tokens/s | peak RSS | vs previous rung | vs TRL default | LM head positions | "
        "tokens computed | CPU s / s | tokens / CPU s (vs previous, vs TRL default) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    previous = None
    for method in methods:
        toggles = results[method][0]["toggles"]
        head = (
            f"{toggles['head_positions'] / toggles['row_positions']:.2f} of all"
            if "head_positions" in toggles
            else "all"
        )
        computed = (
            f"{toggles['computed_tokens'] / toggles['example_tokens']:.2f}x"
            if "computed_tokens" in toggles
            else "1.00x"
        )
        print(
            f"| {LABELS[method]} | {speed[method]:,.1f} | {peak[method]:,.0f} MB | "
            f"{f'{speed[method] / speed[previous]:.2f}x' if previous else '–'} | "
            f"{f'{speed[method] / base:.2f}x' if base else '–'} | {head} | {computed} | "
            f"{cores[method]:.2f} | "
            f"{per_cpu[method]:,.1f} ({f'{per_cpu[method] / per_cpu[previous]:.2f}x' if previous else '–'}, "
            f"{f'{per_cpu[method] / cpu_base:.2f}x' if cpu_base else '–'}) |"
        )
        previous = method
    if min(cores.values()) < 0.85 * max(cores.values()):
        print(
            f"WARNING: the methods got different CPU shares ({min(cores.values()):.2f} to "
            f"{max(cores.values()):.2f} cores): another process was running, so the tokens/s ratios do not "
            "compare like with like; rerun when it is quiet, or compare tokens per CPU second"
        )
    print("\ndropout modules in the LoRA layers (BitDropout / nn.Dropout):")
    for method in methods:
        toggles = results[method][0]["toggles"]
        print(f"  {LABELS[method]:58s} {toggles['bit_dropout_modules']} / {toggles['dropout_modules']}")
    layout = next((r[0]["layout"] for m, r in results.items() if m in ("sft-prefix", "sft-default")), None)
    if layout:
        computed, rendered = layout["computed_tokens"], layout["example_tokens"]
        print(
            f"\nsftline's layout with prefix sharing: {layout['shared_prefix_examples']:,} of "
            f"{layout['examples']:,} examples behind a {layout['shared_prefix_tokens']}-token shared prefix; "
            f"the rows compute {computed:,} of the examples' {rendered:,} tokens ({computed / rendered:.2f}x)"
        )
    checks = [
        ("sftline row (shared prefix):     ", results.get("sft-default"), "sftline_leak"),
        ("TRL padding-free row (sdpa, CPU):", results.get("trl-padding-free"), "trl_leak"),
        ("control, one causal mask per row:", results.get("trl-padding-free"), "control_leak"),
    ]
    if any(runs for _, runs, _ in checks):
        print("\na packed row against its sequences run one at a time, max |logit difference| (first run):")
        for name, runs, key in checks:
            if runs:
                print(f"  {name} {runs[0][key]:.1e}  {_verdict(runs[0][key])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
