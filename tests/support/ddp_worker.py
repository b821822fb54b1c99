"""Run by torchrun in the 2-process tests: trains the tiny model and rank 0 saves its weights.

torchrun --standalone --nproc_per_node 2 tests/support/ddp_worker.py {ddp|fsdp} MODEL_DIR OUT.safetensors

fsdp trains to step INTERRUPTED_AT, then resumes from that checkpoint in a freshly built model,
as `sftline train --resume` does after a kill.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sftline.train.checkpoint import full_trainable_state, latest_checkpoint  # noqa: E402
from sftline.train.distributed import broadcast, init_distributed, strategy_for  # noqa: E402
from sftline.train.trainer import build_model, prepare, train_loop  # noqa: E402
from tests.support.ddp_data import GRAD_ACCUM_PER_RANK, INTERRUPTED_AT, config_for, examples  # noqa: E402


def main() -> None:
    from transformers import AutoTokenizer

    parallel, model_dir, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    info = init_distributed()
    config = config_for(GRAD_ACCUM_PER_RANK, parallel)
    strategy = strategy_for(config.parallel, config.method, info)
    assert strategy == parallel, strategy
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = prepare(tokenizer, examples(), config, system_prompt=None, max_length=512)
    with tempfile.TemporaryDirectory() as checkpoints:
        # Every rank names the same folder: rank 0's, which it writes and all of them read.
        folder = Path(broadcast(checkpoints, info))
        torch.manual_seed(config.seed)
        model = build_model(model_dir, config, torch.device("cpu"))
        stop = INTERRUPTED_AT if parallel == "fsdp" else None
        common = {"checkpoints": folder, "device": torch.device("cpu"), "dist_info": info}
        result = train_loop(model, data, config, stop_after_steps=stop, **common)
        resumed_from = None
        if parallel == "fsdp":
            resumed_from = latest_checkpoint(folder)
            model = build_model(model_dir, config, torch.device("cpu"))  # the killed process is gone
            result = train_loop(model, data, config, resume=True, **common)
        weights = full_trainable_state(model, strategy)  # every rank: a collective under FSDP
    if info.is_main:
        save_file(weights, str(out))
        where = resumed_from.name if resumed_from is not None else "the start"
        print(f"rank 0: {result.state.step} steps, resumed from {where}")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
