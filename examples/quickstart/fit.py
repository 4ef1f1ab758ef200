"""Fit a straight line through the generated points (least squares, standard library only)."""

import csv
import json
import os
import statistics
from pathlib import Path

parameters = json.loads(os.environ.get("ORCHEST_PARAMETERS", "{}"))

with open("data/points.csv", newline="") as f:
    rows = list(csv.DictReader(f))
xs = [float(row["x"]) for row in rows]
ys = [float(row["y"]) for row in rows]

slope, intercept = statistics.linear_regression(xs, ys)
result = {
    "points": len(xs),
    "seed": parameters.get("seed"),
    "slope": round(slope, 3),
    "intercept": round(intercept, 3),
}
Path("data/fit.json").write_text(json.dumps(result, indent=2) + "\n")
print(f"y = {slope:.3f} x + {intercept:.3f} over {len(xs)} points")
