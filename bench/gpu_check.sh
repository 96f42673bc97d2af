#!/usr/bin/env bash
# GPU check (under 8 minutes on one GPU): the device; a nanoGPT-shakespeare_char-sized transformer
# (6 layers, 384 wide, 6 heads, window 256, dropout 0.2) trained 3 minutes in bf16 on tinyshakespeare
# and its whole-validation loss (nanoGPT's published figure: 1.4697 in about 3 minutes on one
# A100); training tokens/s of the default LSTM and the small transformer at batch 64 in fp32 and
# bf16; and --devices 2 against --devices 1 where there are two GPUs.
# Run from the repository root after `make install`:  bash bench/gpu_check.sh [CORPUS]
set -uo pipefail
cd "$(dirname "$0")/.."
SEQGEN=${SEQGEN:-.venv/bin/seqgen}
PY=${PY:-.venv/bin/python}
CORPUS=${1:-../shared/corpora/tinyshakespeare.txt}
OUT=$(mktemp -d /tmp/seqgen-gpu.XXXXXX)
export SEQGEN_CACHE="$OUT/cache"
trap 'rm -rf "$OUT"' EXIT

echo "== device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi not found"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(), 'devices', torch.cuda.device_count(), 'bf16', torch.cuda.is_available() and torch.cuda.is_bf16_supported())"
NGPU=$($PY -c "import torch; print(torch.cuda.device_count())")

echo "== nanoGPT shakespeare_char size, 3 minutes, bf16"
$SEQGEN train "$CORPUS" --model transformer --layers 6 --dim 384 --heads 6 --window 256 --dropout 0.2 \
    --batch 64 --lr 1e-3 --objective causal --precision bf16 --time 3m --out "$OUT/nano" --quiet
$SEQGEN eval "$OUT/nano" --json

speed() {  # name, then seqgen train options: 60 steps, tokens/s from the summary line
    local name=$1; shift
    local line
    line=$($SEQGEN train "$CORPUS" --steps 60 --batch 64 --quiet --out "$OUT/$name" "$@" 2>&1 | grep "tok/s" | tail -1)
    echo "$name: $line"
}
echo "== training tokens/s at batch 64 (60 steps each)"
speed lstm-fp32 --precision fp32
speed lstm-bf16 --precision bf16
speed transformer-fp32 --model transformer --precision fp32
speed transformer-bf16 --model transformer --precision bf16
if [ "${NGPU:-0}" -ge 2 ]; then
    echo "== --devices 2 against --devices 1 (transformer, bf16, global batch 64)"
    speed transformer-1gpu --model transformer --precision bf16 --devices 1
    speed transformer-2gpu --model transformer --precision bf16 --devices 2
else
    echo "== one GPU: no --devices 2 comparison"
fi
