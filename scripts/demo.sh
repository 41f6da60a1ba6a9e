#!/usr/bin/env bash
# Install diar into .venv, run the Ray job with the offline default model on the bundled
# sample (a real 2-speaker LibriSpeech conversation), then score it against its reference.
source "$(dirname "$0")/env.sh"
SAMPLE=diar/data/sample
OUT="${1:-runs/demo}"
python -m jobs.diarize --config configs/default.yaml --wav-scp "$SAMPLE/wav.scp" --out "$OUT"
echo "corpus RTTM: $PWD/$OUT/corpus.rttm"
echo "DER of the offline default against the sample's reference (collar 0.25 s):"
diar score --ref "$SAMPLE/ref.rttm" --hyp "$OUT/corpus.rttm" --collar 0.25
