"""Estimated GPU-hours of BrST-Net's sweep, per backbone, from measured images/s.

Work per variant (an upper bound: every training runs all its epochs) follows the
``brstnet`` configuration: leave-one-patient-out over ``--patients`` patients of
``--spots`` spots; per fold an inner holdout (75 % train / 25 % validation) for
``--epochs`` epochs, then a retrain on all training patients for up to ``--epochs``;
a validation image costs about a third of a training image (forward only).

Throughput: the images/s measured on an H200 (../shared/docs/GPU.md, real ``fit()``
epochs at batch 32, bf16, channels_last) for efficientnet_b0 + auxiliary head (712) and
resnet50 (955); a backbone without a measurement is scaled from the measured one of its
family (or resnet50) by forward FLOPs at 224 px, counted here with torch's FlopCounter.
FLOP scaling is rough: small models at batch 32 are bound by kernel launches rather than
FLOPs, so it overstates their time; measure with ``benchmarks/loader_throughput.py`` on
the GPU and pass ``--measured name=img_s`` to replace an estimate.

    python benchmarks/sweep_gpu_hours.py
    python benchmarks/sweep_gpu_hours.py --measured efficientnet_b3=430 --shared 4
"""

from __future__ import annotations

import argparse

BRSTNET = [
    "resnet101",
    "inception_v3",
    *[f"efficientnet_b{i}" for i in range(6)],
    "vit_base_patch16",
    "vit_base_patch32",
]
#: H200, real fit() epoch, batch 32 (../shared/docs/GPU.md, 2026-11-27)
MEASURED = {"efficientnet_b0": 712.0, "resnet50": 955.0}
#: 1 / 2 / 4 efficientnet_b0 trainings on one H200: aggregate 900 / 1,605 / 2,822 img/s
SHARED_GAIN = {1: 1.0, 2: 1605 / 900, 4: 2822 / 900}


def forward_gflops(name: str, size: int = 224) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from brstnet.models.backbones import create_backbone

    model, _ = create_backbone(name, img_size=size)
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def reference(name: str, measured: dict[str, float]) -> str:
    if name in measured:
        return name
    family = "efficientnet_b0" if name.startswith("efficientnet") else "resnet50"
    return family if family in measured else next(iter(measured))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spots", type=int, default=30_612, help="He et al. 2020 (ST-Net)")
    parser.add_argument("--patients", type=int, default=23)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--measured", nargs="*", default=[], help="name=images_per_s")
    parser.add_argument("--shared", type=int, default=4, choices=sorted(SHARED_GAIN))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    measured = dict(MEASURED)
    measured.update({k: float(v) for k, v in (m.split("=") for m in args.measured)})
    train = args.spots * (args.patients - 1) / args.patients
    per_fold = args.epochs * (0.75 * train + 0.25 * train / 3 + train)
    per_variant = per_fold * args.patients
    print(
        f"work per variant: {per_variant / 1e6:.1f} M training-image equivalents "
        f"({args.patients} folds x {args.epochs} epochs inner + retrain, {args.spots} spots)"
    )
    flops = {name: forward_gflops(name) for name in {*BRSTNET, *measured}}
    gain = SHARED_GAIN[args.shared]
    print(
        f"\n| backbone | GFLOPs fwd @224 | images/s (H200, batch 32) | GPU-h per variant "
        f"| GPU-h per backbone (aux + no aux) | with {args.shared} trainings per GPU |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    total = total_shared = 0.0
    for name in BRSTNET:
        ref = reference(name, measured)
        rate = measured[ref] * flops[ref] / flops[name]
        how = "measured" if name == ref else f"FLOP-scaled from {ref}"
        hours = per_variant / rate / 3600
        total += 2 * hours
        total_shared += 2 * hours / gain
        print(
            f"| {name} | {flops[name]:.1f} | {rate:,.0f} ({how}) | {hours:.0f} | {2 * hours:.0f} "
            f"| {2 * hours / gain:.0f} |"
        )
    print(f"| **sweep (10 backbones x 2)** | | | | **{total:,.0f}** | **{total_shared:,.0f}** |")
    print(
        f"\n{args.shared} trainings per GPU: x{gain:.2f} aggregate, measured for efficientnet_b0 "
        "bare steps (GPU.md); applied to every backbone, it is optimistic for the large ones."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
