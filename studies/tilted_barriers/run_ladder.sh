#!/usr/bin/env bash
# The 14-day aging with the tilted-geometry hop barriers raised by delta (delta_*.yaml), from
# the largest delta down, on 4 NCs of three treatments that span passivation (pristine: no
# ligand; OlABr; DDABr); delta 0.25 on 2 NCs (each 0.05 eV less is ~7x more events).
# Resumable: a stopped run continues from its checkpoints (segsim reproduce).  Run from the
# repository root:  bash studies/tilted_barriers/run_ladder.sh
# Per-NC trajectories go to $SEGSIM_RUNS (default /tmp/segsim_tilted_ladder); the tables are
# copied to studies/tilted_barriers/data/.
set -euo pipefail
here=studies/tilted_barriers
runs=${SEGSIM_RUNS:-/tmp/segsim_tilted_ladder}
mkdir -p "$here/data"
for d in 045 040 035 030 025; do
  n=4
  [ "$d" = 025 ] && n=2
  segsim reproduce -n "$n" --treatments pristine,olabr,ddabr \
    --params "$here/delta_$d.yaml" -o "$runs/d$d"
  cp "$runs/d$d/table.csv" "$here/data/delta_${d}_table.csv"
done
