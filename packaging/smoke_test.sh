#!/usr/bin/env bash
# Runs a built TL Studio app as a user would, on a small generated data set:
#   packaging/smoke_test.sh DIST_DIR        (DIST_DIR: dist/ or dist/tl-studio/)
# --help, scan, a 1-epoch train with the default 2 loader worker processes, export to ONNX and
# TorchScript, evaluate, predict with model.pt2 and the ONNX file, and the window opened offscreen and
# closed. Exits 0 when every step holds; otherwise stops at the first failure and says which.
# Needs python3 (standard library only) to draw the images; the app itself needs nothing installed.
set -euo pipefail

dist=${1:?usage: packaging/smoke_test.sh DIST_DIR}
app=$dist/tl-studio
[[ -d $app ]] && app=$app/tl-studio
[[ -x $app ]] || { echo "No tl-studio executable in $dist (build it with: make package)." >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export QT_QPA_PLATFORM=offscreen TORCH_HOME=$work/torch_home HOME=$work/home XDG_CONFIG_HOME=$work/config
mkdir -p "$HOME"

step() { printf '\n== %s\n' "$*"; }
fail() { echo "SMOKE TEST FAILED: $*" >&2; exit 1; }

step "generating 3 classes x 16 images (48 px PNG)"
python3 "$(dirname "$0")/smoke_images.py" "$work/data"

step "tl-studio --help"
"$app" --help | grep -q "transfer learning on images" || fail "--help did not print the usage"

step "tl-studio scan"
"$app" scan "$work/data" | tee "$work/scan.txt"
grep -q "red" "$work/scan.txt" || fail "scan did not list the classes"

step "tl-studio train (1 epoch, default 2 loader workers)"
"$app" train "$work/data" --out "$work/run" --epochs 1 --batch-size 8 --device cpu
[[ -s $work/run/model.pt2 ]] || fail "train wrote no model.pt2"

step "tl-studio export --format onnx"
"$app" export "$work/run" --format onnx
[[ -s $work/run/model.onnx ]] || fail "export wrote no model.onnx"

step "tl-studio export --format torchscript"
"$app" export "$work/run" --format torchscript
[[ -s $work/run/model.ts ]] || fail "export wrote no model.ts"

step "tl-studio evaluate"
"$app" evaluate "$work/run/model.pt2" "$work/data" || fail "evaluate failed"

for model in model.pt2 model.onnx; do
  step "tl-studio predict with $model"
  "$app" predict --json "$work/run/$model" "$work/data/green" > "$work/predict.jsonl"
  [[ $(wc -l < "$work/predict.jsonl") -eq 16 ]] || fail "predict with $model did not answer for all 16 images"
  # the generated classes are plain colours: a trained model gets nearly all of them right
  right=$(python3 -c 'import json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
# top label: "labels"[0] (today) or "top"[0]["label"] (the calibrated output of PRODUCT.md)
print(sum((r["top"][0]["label"] if "top" in r else r["labels"][0]) == "green" for r in records))' "$work/predict.jsonl")
  [[ $right -ge 12 ]] || fail "predict with $model named only $right of the 16 green images green"
  head -n 2 "$work/predict.jsonl"
done

step "the window, offscreen: opened, libraries loaded, a batch through the fork server's loaders, closed"
TL_STUDIO_CLOSE_AFTER_START=1 timeout 180 "$app" gui "$work/data" || fail "the window did not open and close cleanly"

step "a model file opened with the app (a file manager's \"Open with\"): the Predict step, then closed"
TL_STUDIO_CLOSE_AFTER_START=1 timeout 180 "$app" "$work/run/model.onnx" || fail "opening model.onnx with the app failed"

echo
echo "SMOKE TEST PASSED: $app"
