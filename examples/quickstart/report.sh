#!/usr/bin/env bash
# Gather what the other steps produced into one text report.
set -euo pipefail

{
  echo "Quickstart report: run ${ORCHEST_RUN}, step ${ORCHEST_STEP}"
  echo "Parameters: ${ORCHEST_PARAMETERS}"
  echo
  echo "Fitted line (fit.py):"
  cat data/fit.json
  echo
  echo "Summary (explore.ipynb):"
  cat data/summary.json
} > data/report.txt

cat data/report.txt
