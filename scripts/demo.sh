#!/usr/bin/env bash
# Install diar into .venv, run the Ray job with the offline default model on the bundled
# sample (a real 2-speaker LibriSpeech conversation), then score it against its reference.
OUT="${1:-runs/demo}"
source "$(dirname "$0")/env.sh" ""   # no extras (env.sh would otherwise see this script's arguments)
SAMPLE=diar/data/sample
python -m jobs.diarize --config configs/default.yaml --wav-scp "$SAMPLE/wav.scp" --out "$OUT"
echo "corpus RTTM: $(cd "$OUT" && pwd)/corpus.rttm"
echo "DER of the offline default against the sample's reference (collar 0.25 s):"
diar score --ref "$SAMPLE/ref.rttm" --hyp "$OUT/corpus.rttm" --collar 0.25
