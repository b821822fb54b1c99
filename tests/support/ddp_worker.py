"""Run by torchrun in the 2-process tests: trains the tiny model; rank 0 writes the results.

torchrun --standalone --nproc_per_node 2 tests/support/ddp_worker.py SETUP MODEL_DIR OUT_DIR
    [--resume] [--hold-after STEP]

SETUP is one of ddp_data.SETUPS. In OUT_DIR: `checkpoints/`; `metrics.jsonl`, the rows the
loop hands over with each checkpoint (what reaches the record's run_metrics); `weights.safetensors`,
the trainable weights at the end; `pid-RANK`, each process's id. --resume continues from the
latest checkpoint in OUT_DIR, as `sftline train --resume` does. --hold-after STEP: rank 0 writes
`held` after that step's update and waits there (the other rank waits on it in a collective) to
be killed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sftline.train.checkpoint import full_trainable_state, latest_checkpoint  # noqa: E402
from sftline.train.distributed import init_distributed, strategy_for  # noqa: E402
from sftline.train.trainer import build_model, prepare, train_loop  # noqa: E402
from tests.support.ddp_data import GRAD_ACCUM_PER_RANK, SETUPS, config_for, examples  # noqa: E402


def main() -> None:
    from transformers import AutoTokenizer

    parser = argparse.ArgumentParser()
    parser.add_argument("setup", choices=SETUPS)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--hold-after", type=int)
    args = parser.parse_args()
    info = init_distributed()
    (args.out / f"pid-{info.rank}").write_text(str(os.getpid()))
    config = config_for(GRAD_ACCUM_PER_RANK, args.setup)
    strategy = strategy_for(config.parallel, config.method, info)
    assert strategy == config.parallel, strategy
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    data = prepare(tokenizer, examples(), config, system_prompt=None, max_length=512)
    folder = args.out / "checkpoints"
    resumed_from = latest_checkpoint(folder) if args.resume else None

    def record(rows: list[dict[str, Any]]) -> None:
        with (args.out / "metrics.jsonl").open("a") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)

    def hold(update: dict[str, Any]) -> None:
        if update["step"] == args.hold_after:
            (args.out / "held").touch()
            time.sleep(600)  # killed long before

    torch.manual_seed(config.seed)
    model = build_model(args.model_dir, config, torch.device("cpu"))
    result = train_loop(
        model,
        data,
        config,
        checkpoints=folder,
        device=torch.device("cpu"),
        dist_info=info,
        resume=args.resume,
        on_metrics=record,
        progress=hold if args.hold_after is not None else None,
    )
    weights = full_trainable_state(model, strategy)  # every rank: a collective under FSDP
    if info.is_main:
        save_file(weights, str(args.out / "weights.safetensors"))
        where = resumed_from.name if resumed_from is not None else "the start"
        print(f"rank 0: {result.state.step} steps, resumed from {where}")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
