#!/bin/sh
# One first run as a user makes it, for farm-bench: `tl-studio train` of ants/bees (defaults, 5 epochs)
# with the code of the source tree $1, an empty cache folder (only the model catalogue copied in, which
# is built once per cache folder) and a new run folder; both are removed afterwards. Paired with a
# baseline tree (issue 15: the commit before it, ea7a55b, checked out with `git worktree add`):
#   farm-bench -n 5 --warmup 1 --timeout 900 --vs 'benchmarks/first_run.sh /tmp/wt-ea7a55b' -- benchmarks/first_run.sh .
# The best val accuracy of each run is appended to ${FIRST_RUN_LOG:-/tmp/first_run_results.txt}.
tree=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")/.." && pwd)
data=${DATA:-$here/../shared/datasets/hymenoptera}
work=$(mktemp -d "${TMPDIR:-/tmp}/tl_first_run.XXXXXX")
mkdir -p "$work/cache"
catalogue="${TL_STUDIO_CACHE_DIR:-$HOME/.cache/tl_studio}/model_catalog.json"
[ -f "$catalogue" ] && cp "$catalogue" "$work/cache/"
cd "$work" && PYTHONPATH="$tree" TL_STUDIO_CACHE_DIR="$work/cache" "$here/.venv/bin/python" -m tl_studio train "$data" \
    --out "$work/run" --epochs 5 --json > "$work/log" 2>&1
rc=$?
{ printf '%s rc=%s ' "$tree" "$rc"; grep -o '"best_val_acc": [0-9.]*' "$work/log" | tail -1; } >> "${FIRST_RUN_LOG:-/tmp/first_run_results.txt}"
rm -rf "$work"
exit $rc
