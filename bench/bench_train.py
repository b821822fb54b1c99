"""Benchmark: LoRA SFT throughput, sftline vs TRL's SFTTrainer, in one run.

    OMP_WAIT_POLICY=PASSIVE python bench/bench_train.py   # 2 untimed + 10 timed steps of ~1,024 tokens
    OMP_WAIT_POLICY=PASSIVE python bench/bench_train.py --steps 20 --warmup-steps 3
    python bench/bench_train.py --threads 1 --batch-tokens 4096 --cache /tmp/models

On the project's 2-core CPU machine a 1,024-token step takes 6 to 19 s by method, so the default
run takes ~12 minutes (four methods x 12 steps, plus loading and the checks).

Needs TRL: `pip install -e '.[bench]'`.

Same base model (SmolLM2-135M-Instruct, float32, sdpa attention), same CLINC150 chat examples
(user: query -> assistant: intent, rendered with the model's chat template), LoRA r16 alpha 32
dropout 0.05 on every linear layer, lr 2e-4 cosine with sftline's warmup (3% of the steps), AdamW,
clip 1.0, loss on the answer only, one optimizer step per micro-batch (no accumulation):

1. sftline, as it trains by default: sequences packed first-fit-decreasing into micro-batches of
   at most --batch-tokens tokens of examples; inside one, the tokens every example starts with
   (SmolLM2's template header and default system prompt, 24 of a query's ~45 tokens) are laid out
   once per row and attended to by every sequence behind them (a 4D mask; `sftline.train.rows`),
   so a step computes about half of its examples' tokens, with the same loss and gradients. The
   LoRA dropout draws its masks from 16-bit slices of 64-bit random numbers (`BitDropout`).
1b. sftline with `prefix_sharing=False`: the same micro-batches, every sequence whole in rows of
   at most row_tokens, attention kept per sequence through position_ids: what the packing
   alone gives.
2. TRL default: SFTTrainer's defaults for this data, no packing, right padding to the longest
   example of the batch; per-device batch = round(--batch-tokens / mean example length), so a
   step carries about as many real tokens as sftline's. SmolLM2's template has no
   `{% generation %}` markers and TRL 1.16 cannot patch it (`get_training_chat_template` raises),
   so `assistant_only_loss=True` is impossible: the data is given in TRL's conversational
   prompt-completion form (prompt = [user], completion = [assistant]), which makes TRL train
   the completion only (`completion_only_loss`, its default for that form).
3. TRL packed: `packing=True` (best-fit decreasing, max_length = --batch-tokens) with
   `padding_free=True`, batch 1: TRL's fastest setting.

Two TRL defaults are overridden to match sftline: `gradient_checkpointing=False` (TRL: True) and
`bf16=False` (TRL: True; sftline trains in float32 here). TRL keeps its own optimizer default
(`adamw_torch_fused`) and its fused LM head.

Throughput = non-padding tokens (tokens of the rendered examples in the timed steps, a shared
prefix counted in every example that has it, as TRL counts it) / wall time of those steps: from
the end of the last warm-up step to the end of the last timed step, so data loading, forward,
backward, clipping and the optimizer step are all inside; checkpoints are not (sftline writes
only after the last step; TRL saves nothing). The CPU machine is shared, and
wall time moves with what else runs on it (one method's tokens/s varied 1.7x between runs
here). "CPU s / s" is this process's CPU time over the timed window divided by its wall time:
the cores it actually got. With 2 threads it is ~1.9 when the machine is quiet; near 1 another
process held a core, and that row's seconds are inflated; compare rows only when it is similar.

TRL documents padding-free as FlashAttention-only. On CPU there is no FlashAttention, so the
script checks what the sdpa path does with a packed row: it compares the row's logits with those
of its sequences run one at a time, and, as a control, with one causal mask across the row. The
same check runs on one of sftline's shared-prefix rows (the prefix's logits and every suffix's). With
transformers 5.x the row is confined per sequence: TRL's collator passes position_ids and no
attention_mask, TRL sets use_cache=False, and masking_utils then builds a block-diagonal mask
from the position restarts (the same mechanism sftline relies on). The output prints the check.

On the project's 2-core machine set OMP_WAIT_POLICY=PASSIVE (or --threads 1): with torch's
default of 2 threads and OpenMP's default spin-waiting, every small op costs milliseconds (an
elementwise multiply of a 256x576 tensor: ~8 ms, against 35 us on one thread), which makes a
forward pass ~3x slower and adds a per-op cost that distorts the comparison. The header prints
the thread count and the policy.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress

from sftline.data.example import Example, Provenance
from sftline.models import materialise_embedded
from sftline.train.config import LoraSettings, TrainConfig
from sftline.train.packing import batch_logits
from sftline.train.trainer import build_model, micro_batch_plan, prepare, train_loop

try:
    import datasets
    import transformers
    from datasets import Dataset
    from peft import LoraConfig
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


def sftline_warmup_steps(total: int) -> int:
    """sftline's warm-up (round(3% of the steps)); TRL would take ceil of a ratio."""
    return round(TrainConfig.model_fields["warmup_ratio"].default * total)


@dataclass
class Measurement:
    method: str
    steps: int
    tokens: int
    """Non-padding tokens in the timed steps."""
    seconds: float
    """Wall time of the timed steps."""
    cpu_seconds: float
    """CPU time of this process (all its threads) in the same window."""

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds

    @property
    def cores_used(self) -> float:
        return self.cpu_seconds / self.seconds


def stamp() -> tuple[float, float]:
    """(wall, process CPU) seconds now."""
    return time.perf_counter(), time.process_time()


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


def train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        base=BASE,
        data="clinc150",
        method="lora",
        batch_tokens=args.batch_tokens,
        grad_accum=1,
        max_steps=args.warmup_steps + args.steps,
        lr=LR,
        lora=LORA,
        save_every=10**9,  # no checkpoint inside the timed steps (the loop still writes one at the end)
        seed=args.seed,
    )


def run_sftline(
    model_path: Path,
    tokenizer: Any,
    examples: list[Example],
    args: argparse.Namespace,
    progress: Progress,
    *,
    prefix_sharing: bool,
) -> tuple[Measurement, float, dict[str, int]]:
    config = train_config(args).model_copy(update={"prefix_sharing": prefix_sharing})
    data = prepare(tokenizer, examples, config, system_prompt=None, max_length=MAX_LENGTH)
    model = build_model(model_path, config, torch.device("cpu"))
    name = "sftline (packed, shared prefix)" if prefix_sharing else "sftline (packed, no prefix sharing)"
    task = progress.add_task(name, total=config.max_steps)
    ends: dict[int, tuple[float, float]] = {}

    def on_step(event: dict[str, Any]) -> None:
        ends[event["step"]] = stamp()
        progress.update(task, completed=event["step"])

    with tempfile.TemporaryDirectory() as checkpoints:
        result = train_loop(
            model, data, config, checkpoints=Path(checkpoints), device=torch.device("cpu"), progress=on_step
        )
    # The loop's micro-batch plan is a pure function of (bins, config): it says which sequences each
    # step trained on, so the timed steps' tokens are counted exactly.
    plan = micro_batch_plan(len(data.bins), config)
    step_tokens = [data.n_tokens(data.collate(data.bins[b])) for b in plan]
    if sum(step_tokens) != result.state.tokens:
        raise RuntimeError("sftline's token count differs from its micro-batch plan; the plan has changed")
    measurement = Measurement(
        name,
        args.steps,
        sum(step_tokens[args.warmup_steps :]),
        ends[config.max_steps][0] - ends[args.warmup_steps][0],
        ends[config.max_steps][1] - ends[args.warmup_steps][1],
    )
    return measurement, sftline_leak_check(model, data, data.bins[plan[0]][0]), data.layout


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


class _StepClock(TrainerCallback):  # type: ignore[misc]
    """Wall time at the end of every optimizer step."""

    def __init__(self, progress: Progress, task: Any) -> None:
        self.ends: dict[int, tuple[float, float]] = {}
        self.progress, self.task = progress, task

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.ends[state.global_step] = stamp()
        self.progress.update(self.task, completed=state.global_step)


class _CountingSFTTrainer(SFTTrainer):  # type: ignore[misc]
    """SFTTrainer that records the non-padding tokens of every micro-batch it trains on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.step_tokens: list[int] = []

    def training_step(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if "attention_mask" in inputs:
            self.step_tokens.append(int(inputs["attention_mask"].sum()))
        else:  # padding-free: one flattened row, nothing padded (pad_to_multiple_of is None on CPU)
            self.step_tokens.append(int(inputs["input_ids"].numel()))
        return super().training_step(model, inputs, *args, **kwargs)


def run_trl(
    model_path: Path,
    tokenizer: Any,
    examples: list[Example],
    args: argparse.Namespace,
    progress: Progress,
    *,
    packed: bool,
    batch_size: int,
) -> tuple[Measurement, _CountingSFTTrainer]:
    dataset = Dataset.from_list(
        [{"prompt": e.messages[:1], "completion": e.messages[1:]} for e in examples]  # type: ignore[index]
    )
    total = args.warmup_steps + args.steps
    with tempfile.TemporaryDirectory() as output_dir:
        config = SFTConfig(
            output_dir=output_dir,
            max_steps=total,
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=1,
            learning_rate=LR,
            lr_scheduler_type="cosine",
            warmup_steps=sftline_warmup_steps(total),
            weight_decay=0.0,
            max_grad_norm=1.0,
            max_length=args.batch_tokens if packed else MAX_LENGTH,
            packing=packed,
            padding_free=packed,
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
        name = "TRL packed + padding_free" if packed else "TRL default (padded)"
        task = progress.add_task(name, total=total)
        clock = _StepClock(progress, task)
        trainer = _CountingSFTTrainer(
            model=model,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[clock],
        )
        trainer.remove_callback(PrinterCallback)  # its end-of-training dict; the table says it all
        trainer.train()
    measurement = Measurement(
        name,
        args.steps,
        sum(trainer.step_tokens[args.warmup_steps :]),
        clock.ends[total][0] - clock.ends[args.warmup_steps][0],
        clock.ends[total][1] - clock.ends[args.warmup_steps][1],
    )
    return measurement, trainer


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
    inputs = {k: v for k, v in batch.items() if k != "labels"}
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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps per method")
    parser.add_argument("--warmup-steps", type=int, default=2, help="untimed steps before them (>= 1)")
    parser.add_argument("--batch-tokens", type=int, default=1024, help="tokens per optimizer step")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="materialised base models")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.warmup_steps < 1 or args.steps < 1:
        parser.error("--steps and --warmup-steps must be at least 1 (the clock starts at the end of a step)")
    if args.threads:
        torch.set_num_threads(args.threads)
    # Library chatter (deprecation warnings raised inside TRL, dataset.map bars) would bury the table.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*pin_memory.*")
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    model = materialise_embedded(BASE, args.cache)
    tokenizer: Any = AutoTokenizer.from_pretrained(model.path, local_files_only=True)
    # Pool: ~4x the tokens all steps need (about 45 tokens per rendered example): no method wraps
    # around to a second epoch, and the one part-filled packed row is rarely among the timed steps.
    total_steps = args.warmup_steps + args.steps
    examples = clinc_chat_examples(math.ceil(4 * total_steps * args.batch_tokens / 45), args.seed)
    lengths = [
        len(tokenizer.apply_chat_template(e.messages, tokenize=True, return_dict=True)["input_ids"])
        for e in examples
    ]
    mean_length = sum(lengths) / len(lengths)
    batch_size = max(1, round(args.batch_tokens / mean_length))
    print(
        f"data: {len(examples):,} CLINC150 train examples, {sum(lengths):,} tokens rendered, "
        f"mean {mean_length:.1f}, max {max(lengths)}"
    )
    print(
        f"steps: {args.warmup_steps} untimed + {args.steps} timed; ~{args.batch_tokens:,} tokens per step "
        f"(sftline/TRL packed: rows of <= {args.batch_tokens:,} tokens; TRL default: "
        f"{batch_size} examples x {mean_length:.1f} tokens = {batch_size * mean_length:,.0f} real tokens)"
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; TRL {trl_version}; "
        "float32, sdpa attention, LoRA r16 a32 dropout 0.05 all-linear, lr 2e-4 cosine"
    )

    with Progress(transient=True) as progress:
        common = (model.path, tokenizer, examples, args, progress)
        sft, sft_leak, layout = run_sftline(*common, prefix_sharing=True)
        unshared, _, _ = run_sftline(*common, prefix_sharing=False)
        plain, _ = run_trl(
            model.path, tokenizer, examples, args, progress, packed=False, batch_size=batch_size
        )
        best, packed_trainer = run_trl(
            model.path, tokenizer, examples, args, progress, packed=True, batch_size=1
        )
    # TRL's first packed row, collated as in training (position_ids, cu_seq_lens_*, no attention_mask).
    packed_rows: Any = packed_trainer.train_dataset
    trl_row = packed_trainer.data_collator([packed_rows[0]])
    trl_leak = leak_check(packed_trainer.model, trl_row)
    control = leak_check(packed_trainer.model, trl_row, causal_row=True)

    print()
    print(
        "| method | steps | non-padding tokens | seconds | tokens/s | vs TRL default | vs TRL packed "
        "| CPU s / s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for m in (sft, unshared, plain, best):
        print(
            f"| {m.method} | {m.steps} | {m.tokens:,} | {m.seconds:.1f} | {m.tokens_per_second:,.0f} | "
            f"{m.tokens_per_second / plain.tokens_per_second:.2f}x | "
            f"{m.tokens_per_second / best.tokens_per_second:.2f}x | {m.cores_used:.2f} |"
        )
    shares = [m.cores_used for m in (sft, unshared, plain, best)]
    if min(shares) < 0.85 * max(shares):
        print(
            f"WARNING: the methods got different CPU shares ({min(shares):.2f} to {max(shares):.2f} cores): "
            "another process was running, so the ratios do not compare like with like; rerun when it is quiet"
        )
    print()
    computed, rendered = layout["computed_tokens"], layout["example_tokens"]
    print(
        f"sftline's layout: {layout['shared_prefix_examples']:,} of {layout['examples']:,} examples behind "
        f"a {layout['shared_prefix_tokens']}-token shared prefix; the rows compute {computed:,} of the "
        f"examples' {rendered:,} tokens ({computed / rendered:.2f}x)"
    )
    print()
    print("a packed row against its sequences run one at a time, max |logit difference|:")
    print(f"  sftline row (shared prefix):      {sft_leak:.1e}  {_verdict(sft_leak)}")
    print(f"  TRL padding-free row (sdpa, CPU): {trl_leak:.1e}  {_verdict(trl_leak)}")
    print(f"  control, one causal mask per row: {control:.1e}  {_verdict(control)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
