#!/usr/bin/env bash
# LEAPS on adversarially trained networks: trains the embedded classifier and verifier with PGD
# (L-inf radius 0.02 in pixels, 3 steps, plus pixel noise; ~20 min on 2 cores), synthesizes all 12 classes
# with LEAPS (full objective at the preset's r, at r = 1e-4 and 1e-6, and the Table 3 ablations) and 3D DeepDream, once with these networks and once with the
# shipped ones, and scores every run with its own model and verifier and the independent evaluator.
# Writes RESULTS/robust_networks_embedded.md. Usage: bash benchmarks/robust_networks.sh (repo root, .venv set up)
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
RESULTS=${RESULTS:-benchmarks/results}
ROBUST=${ROBUST:-build/robust}   # kept: delete it to train again
RUNS=build/robust-runs
[ -f "$ROBUST/classifier.pt" ] && [ -f "$ROBUST/verifier.pt" ] || \
  "$PYTHON" -m leaps_engine.engine.embedded.train --seed 0 --out "$ROBUST" --only classifier --only verifier \
      --adversarial 0.02 --noise --steps 1600 > "$ROBUST.log"
classes=(); for index in $(seq 0 11); do classes+=(--class "$index"); done
rm -rf "$RUNS"
for networks in shipped robust; do
  weights=(); [ "$networks" = robust ] && weights=(--weights "$ROBUST/classifier.pt" --verifier-weights "$ROBUST/verifier.pt")
  for setting in "leaps:--objective full" "leaps-r1e-4:--objective full --r 0.0001" "leaps-r1e-6:--objective full --r 0.000001" \
                 "prim:--objective prim" \
                 "prim-coh:--objective prim+coh" "prim-feat:--objective prim+feat" "deepdream:--method deepdream"; do
    name=${setting%%:*}; options=${setting#*:}
    "$PYTHON" -m leaps_engine synthesize "${classes[@]}" "${weights[@]}" $options --seed 1000 \
        --out "$RUNS/$networks/$name" > /dev/null 2>&1
  done
done
out="$RESULTS/robust_networks_embedded.md"
{
  echo "# LEAPS on adversarially trained embedded networks"
  echo
  echo "Command: \`bash benchmarks/robust_networks.sh\`; 12 classes x 1 video (seed 1000, generated stimuli), preset steps.  "
  echo "Robust networks: \`python -m leaps_engine.engine.embedded.train --seed 0 --out $ROBUST --only classifier"
  echo "--only verifier --adversarial 0.02 --noise --steps 1600\` (held-out accuracy in $ROBUST/training.json)."
  for networks in shipped robust; do
    echo; echo "## $networks classifier and verifier"; echo
    "$PYTHON" -m leaps_engine evaluate "$RUNS/$networks" --evaluator embedded_evaluator --group-by method,objective,r \
        2>/dev/null | grep -v "^>"
  done
} > "$out.tmp"
mv "$out.tmp" "$out"
cat "$out"
