"""Print the LLaDA-8B memory plan (docs/memory.md's table) for the paper's batch shapes.

.venv/bin/python scripts/memory_plan.py > docs/memory-table.md
"""

from __future__ import annotations

from dtm.memory_plan import ModelShape, StepShape, memory_plan

SHAPES = {
    "Countdown 12 x (172 + 256)": StepShape(micro_batch=12, prompt_length=172),
    "Sudoku 4 x (1132 + 256)": StepShape(micro_batch=4, prompt_length=1132),
}
SETUPS = {
    "LoRA r=128, 4-bit NF4 base (paper)": dict(lora_r=128, four_bit=True),
    "LoRA r=128, bf16 base": dict(lora_r=128, four_bit=False),
    "full fine-tuning, bf16 autocast": dict(lora_r=None, four_bit=False),
    "full fine-tuning, FSDP over 8 GPUs": dict(lora_r=None, four_bit=False, shards=8),
}


def main() -> None:
    shape = ModelShape.llada_8b()
    print(f"LLaDA-8B: {shape.params() / 1e9:.2f}B parameters, LoRA r=128 adapter {shape.lora_params(128) / 1e6:.0f}M.")
    print()
    print("| batch shape | setup | ckpt | weights | grads + AdamW | teacher + EMA | activations | total | 80 GB |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    for shape_name, step in SHAPES.items():
        for setup_name, setup in SETUPS.items():
            for checkpointing in (False, True):
                plan = memory_plan(shape, step, checkpointing=checkpointing, ema=True, **setup)
                cells = [
                    shape_name,
                    setup_name,
                    "yes" if checkpointing else "no",
                    f"{plan['frozen weights'] + plan['trainable weights']:.1f}",
                    f"{plan['gradients'] + plan['AdamW moments']:.1f}",
                    f"{plan['teacher'] + plan['EMA']:.1f}",
                    f"{plan['activations']:.1f}",
                    f"{plan['total']:.1f}",
                    "fits" if plan["total"] < 80 else "no",
                ]
                print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
