"""One table from a GPU check's figures (``benchmarks/gpu_check.sh`` writes them to $OUT):
real ``fit`` against the bare step per setting, compiled against eager, and trainings
sharing the GPU against one alone.

    python benchmarks/gpu_table.py gpu_out
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    fits = {
        p.stem.removeprefix("fit_"): json.loads(p.read_text()) for p in args.out.glob("fit_*.json")
    }
    print(
        "| setting | bare step (img/s) | real fit (img/s) | fit / bare | compiled / eager (fit) |"
    )
    print("| --- | --- | --- | --- | --- |")
    for name, f in sorted(fits.items()):
        bare = (f["bare_step_images_per_s_before"] + f["bare_step_images_per_s_after"]) / 2
        eager = fits.get(name.replace("_compiled", "_eager"))
        speedup = (
            f"{f['fit_epoch_images_per_s'] / eager['fit_epoch_images_per_s']:.2f}x"
            if name.endswith("_compiled") and eager
            else "-"
        )
        print(
            f"| {name} ({f['device']}) | {bare:,.0f} | {f['fit_epoch_images_per_s']:,.0f} | "
            f"{f['fit_over_bare_step']:.2f} | {speedup} |"
        )
    sharing = args.out / "sharing.json"
    if sharing.is_file():
        rows = json.loads(sharing.read_text())["rows"]
        print("\n| trainings on one GPU | per training (img/s) | aggregate (img/s) | vs one |")
        print("| --- | --- | --- | --- |")
        for row in rows:
            each = ", ".join(f"{r:,.0f}" for r in row["per_training_images_per_s"])
            print(
                f"| {row['trainings']} | {each} | {row['aggregate_images_per_s']:,.0f} | "
                f"{row['vs_one']:.2f}x |"
            )
    if not fits and not sharing.is_file():
        print(f"no figures in {args.out}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
