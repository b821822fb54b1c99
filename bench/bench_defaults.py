"""sftline against TRL's SFTTrainer, each at the defaults a user gets: tokens/s and peak memory.

Each side trains SmolLM2-135M-Instruct with LoRA (r 16, alpha 32, dropout 0.05, every linear
layer) on the same CLINC150 chats (one system prompt, a query, the intent), in a process of its
own, so its peak resident memory is its own. sftline: `sftline train --base ... --data ...
--max-steps N` and nothing else. TRL: `SFTConfig` defaults (8 padded sequences per device, no
packing, max_length 1024), float32 on CPU. Tokens are the examples' non-padding tokens on both
sides; the rate is over the training loop (data preparation excluded on both). The order of the
sides alternates between repeats.

`--shape long` uses multi-turn conversations with no system message instead (3-8 exchanges,
answers of varied length; TRL gets them as `messages`): no shared prefix for sftline to exploit,
the ratio a user with such data would see.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/bench_defaults.py --examples 1000 --repeats 2
    .venv/bin/python bench/bench_defaults.py --shape long --examples 300 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLINC = ROOT / "examples" / "clinc150" / "data_full.json"
SYSTEM = "Name the intent of the user's request with one label, or oos if it is out of scope."


def write_chats(path: Path, n: int) -> None:
    rows = json.loads(CLINC.read_text())["train"]
    step = max(1, len(rows) // n)
    with path.open("w") as handle:
        for text, label in rows[::step][:n]:
            chat = [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": text},
                {"role": "assistant", "content": label},
            ]
            handle.write(json.dumps({"messages": chat}) + "\n")


def write_long_chats(path: Path, n: int, seed: int = 0) -> None:
    """Multi-turn conversations of 3-8 exchanges with no system message and answers of varied
    length, built from CLINC150 queries: no shared prefix for sftline to exploit, long rows, many
    trained tokens (synthetic: the shape of users' chat data, not its language)."""
    import random

    rng = random.Random(seed)
    rows = json.loads(CLINC.read_text())["train"]
    with path.open("w") as handle:
        for _ in range(n):
            chat = []
            for _turn in range(rng.randint(3, 8)):
                text, label = rows[rng.randrange(len(rows))]
                others = [rows[rng.randrange(len(rows))][0] for _ in range(rng.randint(0, 4))]
                answer = f"That is a {label.replace('_', ' ')} request. " + " ".join(
                    f"A similar one would be: {other}." for other in others
                )
                chat += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
            handle.write(json.dumps({"messages": chat}) + "\n")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _cli(argv: list[str]) -> str:
    """Run the sftline CLI in this process; its stdout (JSON) as text."""
    import io

    from sftline.cli.main import main

    saved, sys.stdout = sys.stdout, io.StringIO()
    try:
        code = main([*argv, "--json"])
        out = sys.stdout.getvalue()
    finally:
        sys.stdout = saved
    if code != 0:
        raise SystemExit(f"sftline {' '.join(argv)} failed ({code}): {out[-500:]}")
    return out


def run_sftline(model: Path, data: Path, steps: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder) / "p"
        _cli(["init", str(project), "--task", "chat"])
        os.chdir(project)
        _cli(["models", "base", "add", "smollm2-135m-instruct", str(model)])
        _cli(["data", "import", str(data), "--name", "chats"])
        summary = json.loads(
            _cli(["train", "--base", "smollm2-135m-instruct", "--data", "chats", "--max-steps", str(steps)])
        )
    return {"tokens_per_second": summary["tokens_per_second"], "setting": summary["tokens_per_step"]}


def run_trl(model: Path, data: Path, steps: int) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    class CountingTrainer(SFTTrainer):  # type: ignore[misc]
        tokens = 0

        def training_step(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            CountingTrainer.tokens += int(inputs["attention_mask"].sum())
            return super().training_step(model, inputs, *args, **kwargs)

    chats = [json.loads(line)["messages"] for line in data.read_text().splitlines()]
    # A system + query + answer chat as prompt and completion (TRL then trains the answer alone,
    # as sftline does); a multi-turn conversation as `messages`, TRL's format for it.
    single = all(len(c) == 3 for c in chats)
    rows = [{"prompt": c[:2], "completion": c[2:]} if single else {"messages": c} for c in chats]
    dataset = Dataset.from_list(rows)
    tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
    with tempfile.TemporaryDirectory() as output_dir:
        config = SFTConfig(
            output_dir=output_dir, max_steps=steps, save_strategy="no", logging_strategy="no",
            report_to="none", disable_tqdm=True, bf16=False,
        )  # fmt: skip
        lora = LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
        )
        trainer = CountingTrainer(
            model=AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32, local_files_only=True),
            args=config, train_dataset=dataset, processing_class=tokenizer, peft_config=lora,
        )  # fmt: skip
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    sequences = config.per_device_train_batch_size
    return {
        "tokens_per_second": CountingTrainer.tokens / seconds,
        "tokens": CountingTrainer.tokens,
        "setting": f"{sequences} padded sequences a step, max_length {config.max_length}",
    }


def child(args: argparse.Namespace) -> int:
    run = run_sftline if args.side == "sftline" else run_trl
    result = run(args.model, args.data, args.steps)
    result["peak_mb"] = peak_mb()
    print(json.dumps(result))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="SmolLM2 HF folder (default: materialise it)"
    )
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--sftline-steps", type=int, default=3, help="~8.6k tokens each")
    parser.add_argument("--trl-steps", type=int, default=20, help="8 sequences each")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--shape", choices=["clinc", "long"], default="clinc", help="the chats' shape")
    parser.add_argument("--side", choices=["sftline", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        return child(args)
    if args.model is None:
        from sftline.models import materialise_embedded

        cache = Path(tempfile.gettempdir()) / "sftline-bench-models"
        args.model = materialise_embedded("smollm2-135m-instruct", cache).path
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "chats.jsonl"
        (write_long_chats if args.shape == "long" else write_chats)(data, args.examples)
        results: dict[str, list[dict[str, Any]]] = {"sftline": [], "trl": []}
        for repeat in range(args.repeats):
            order = ["sftline", "trl"] if repeat % 2 == 0 else ["trl", "sftline"]
            for side in order:
                steps = args.sftline_steps if side == "sftline" else args.trl_steps
                command = [sys.executable, __file__, "--side", side, "--model", str(args.model),
                           "--data", str(data), "--steps", str(steps)]  # fmt: skip
                done = subprocess.run(
                    command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
                )
                if done.returncode != 0:
                    print(done.stderr[-3000:], file=sys.stderr)
                    return 1
                result = json.loads(done.stdout.strip().splitlines()[-1])
                results[side].append(result)
                print(f"repeat {repeat + 1} {side:8s} {result['tokens_per_second']:8.1f} tokens/s  "
                      f"peak {result['peak_mb']:8.0f} MB  ({result['setting']})", flush=True)  # fmt: skip
    speed = {s: statistics.median(r["tokens_per_second"] for r in results[s]) for s in results}
    peak = {s: statistics.median(r["peak_mb"] for r in results[s]) for s in results}
    print(f"\nmedian tokens/s: sftline {speed['sftline']:.1f}, TRL {speed['trl']:.1f}: "
          f"{speed['sftline'] / speed['trl']:.2f}x")  # fmt: skip
    print(f"median peak memory: sftline {peak['sftline']:.0f} MB, TRL {peak['trl']:.0f} MB: "
          f"{peak['sftline'] / peak['trl']:.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
