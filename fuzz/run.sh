#!/usr/bin/env bash
# make fuzz: runs every target for FUZZ_SECONDS (the pipeline for FUZZ_PIPELINE_SECONDS) with
# cargo-fuzz on the nightly toolchain, seeded from the repo's fixtures, and prints the executions per
# target. Crashes land in fuzz/artifacts/<target>/; turn each into a regression test (docs/limits-and-reliability.md, "Fuzzing").
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd .. && pwd)
seconds=${FUZZ_SECONDS:-60}
pipeline_seconds=${FUZZ_PIPELINE_SECONDS:-300}
targets=${FUZZ_TARGETS:-"s3_event manifest presets probe exif progressive_jpeg pipeline"}

seed() { # target, files...
  local dir="corpus/$1"; shift
  mkdir -p "$dir"
  for f in "$@"; do [ -f "$f" ] && cp -n "$f" "$dir/" || true; done
}
small_images=$(find "$root/tests/fixtures/images" -type f ! -name '*.md' ! -name '*.tsv' -size -300k)
seed s3_event "$root"/tests/fixtures/events/*.json
seed manifest seeds/manifest/*
mkdir -p corpus/presets
for f in "$root"/functions/core/presets/*.toml; do
  { printf '\0'; cat "$f"; } > "corpus/presets/$(basename "$f")"
done
# shellcheck disable=SC2086
seed probe $small_images
# shellcheck disable=SC2086
seed exif $small_images
# shellcheck disable=SC2086
seed pipeline $small_images
seed progressive_jpeg "$root"/tests/fixtures/images/*progressive*

cargo +nightly fuzz build -s none >/dev/null
mkdir -p "$root/target/fuzz"
summary="$root/target/fuzz/summary.tsv"
printf 'target\tseconds\texecutions\texec_per_s\tcrashes\n' > "$summary"
for t in $targets; do
  s=$seconds; [ "$t" = pipeline ] && s=$pipeline_seconds
  log="$root/target/fuzz/$t.log"
  echo "fuzzing $t for ${s}s (log: target/fuzz/$t.log)"
  rc=0
  cargo +nightly fuzz run -s none "$t" "corpus/$t" -- -max_total_time="$s" -max_len=300000 \
    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1 || rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  crashes=$(find "artifacts/$t" -type f 2>/dev/null | wc -l)
  printf '%s\t%s\t%s\t%s\t%s\n' "$t" "$s" "${execs:-0}" "$(( ${execs:-0} / s ))" "$crashes" >> "$summary"
  if [ "$rc" != 0 ]; then echo "  $t stopped with a finding (exit $rc): see $log and fuzz/artifacts/$t/"; fi
done
column -t -s $'\t' "$summary"
