#!/usr/bin/env bash
# Proof that a refactor changes no output (issue 17): into a fresh data root with a small synthetic
# universe, run `daily` on three dates, `replay` of a month, `backtest` of that month (local, then
# dask) and `explain --json` of three events, and write the sha256 of every produced file.
#
# Usage: tools/output_hashes.sh OUT.txt [WORKDIR]   (from the repository root; uses .venv/bin/pipeline)
#
# After each phase the whole data root is hashed again, each line prefixed by the phase, so the
# local and dask backtests (which write the same paths) are both covered.
# Excluded, because they carry timestamps, durations or run ids rather than results:
#   logs/ (run logs), runs/ (run manifests named by a timestamp), any *manifest* file, *.lock.
set -euo pipefail
out=$(realpath -m "${1:?usage: tools/output_hashes.sh OUT.txt [WORKDIR]}")
work=${2:-$(mktemp -d /tmp/ivcrush_proof.XXXXXX)}
PIPELINE=${PIPELINE:-.venv/bin/pipeline}
rm -rf "$work" && mkdir -p "$work"
root="$work/data"
cat > "$work/config.yaml" <<'YAML'
source: synthetic
synthetic:
  seed: 7
  universe_size: 120
YAML
run() { "$PIPELINE" --config "$work/config.yaml" --data-dir "$root" "$@" > /dev/null; }
hash_all() {  # phase
  (cd "$root" && find . -type f ! -path './logs/*' ! -path './runs/*' ! -name '*manifest*' ! -name '*.lock' -print0 \
     | LC_ALL=C sort -z | xargs -0 sha256sum) | sed "s|^|$1 |" >> "$out"
}
: > "$out"
for d in 2026-11-16 2026-11-17 2026-11-18; do run daily --date "$d"; done
hash_all daily
run replay --start 2026-10-01 --end 2026-10-30
hash_all replay
run backtest --start 2026-10-01 --end 2026-10-30
hash_all backtest_local
run backtest --start 2026-10-01 --end 2026-10-30 --engine dask
hash_all backtest_dask
mkdir -p "$work/explain"
events=$(.venv/bin/python - "$root/reports/rank_2026-11-18.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print(" ".join(r["ticker"] for r in rows[:3]))
PY
)
for t in $events; do
  PIPELINE_CONFIG="$work/config.yaml" PIPELINE_DATA_DIR="$root" "$PIPELINE" explain "$t" --date 2026-11-18 --json \
    > "$work/explain/$t.json"
done
(cd "$work" && sha256sum explain/*.json) | sed 's|^|explain |' >> "$out"
echo "$(wc -l < "$out") hashes -> $out (work dir $work)"
