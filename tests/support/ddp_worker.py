"""Run by torchrun in the 2-process test: trains the tiny model and rank 0 saves its weights.

torchrun --standalone --nproc_per_node 2 tests/support/ddp_worker.py MODEL_DIR OUT.safetensors
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sftline.train.checkpoint import trainable_state  # noqa: E402
from sftline.train.distributed import init_distributed  # noqa: E402
from sftline.train.trainer import build_model, prepare, train_loop  # noqa: E402
from tests.support.ddp_data import GRAD_ACCUM_PER_RANK, config_for, examples  # noqa: E402


def main() -> None:
    from transformers import AutoTokenizer

    model_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    info = init_distributed()
    config = config_for(GRAD_ACCUM_PER_RANK)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = prepare(tokenizer, examples(), config, system_prompt=None, max_length=512)
    torch.manual_seed(config.seed)
    model = build_model(model_dir, config, torch.device("cpu"))
    with tempfile.TemporaryDirectory() as checkpoints:
        result = train_loop(
            model, data, config, checkpoints=Path(checkpoints), device=torch.device("cpu"), dist_info=info
        )
    if info.is_main:
        save_file(trainable_state(model), str(out))
        print(f"rank 0: {result.state.step} steps, loss {result.state.history[-1]['loss']:.6f}")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
