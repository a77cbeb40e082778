"""How close is data_processing to the time it takes to decode the images, and does its
memory stay flat as the collection grows?

1. The default her2st sections: the time to decode their JPEGs (one after the other),
   the wall time of data_processing from the raw files to the patch store on disk, and
   their ratio. data_processing runs twice: its nodes called one after the other (each
   stage timed; the store written by ``PatchStoreDataset``), then the pipeline from
   read_sections on through Kedro's SequentialRunner and the project's catalog (the
   AnnData partitions written and read back), the headline figure. Decode, nodes and
   pipeline run ``--repeats`` times in turn (3); the figures are their medians.
2. A synthetic collection: ``--spots`` spots a section on one her2st image, cut at
   ``--size`` px, for each number of sections in ``--collections``; each build runs in a
   fresh process, which reports its wall time and peak resident memory (its own and its
   workers'). Growth per spot is the difference between the largest and smallest
   collection divided by their difference in spots.

Needs the her2st copy (``--her2st``) and free disk for the synthetic stores (written
under ``--tmp`` and deleted; 1,000 spots at 224 px are 150 MB). Examples:

    python benchmarks/data_processing_scale.py                    # both parts, 2 workers
    python benchmarks/data_processing_scale.py --part collection --collections 5 20
    python benchmarks/data_processing_scale.py --part collection --collections 20 200 \\
        --tmp /big/disk                                            # 30 GB of patches
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from PIL import Image

from brstnet.datasets import PatchStoreDataset
from brstnet.pipelines.data_processing import nodes
from brstnet.st.geometry import PatchGeometry
from brstnet.st.images import read_image
from brstnet.st.patches import write_patch_store

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SECTIONS = ["B4", "C2", "C3", "C4", "C5", "C6"]


def _catalog(root: Path):
    """The project's catalog (conf/base/catalog.yml) with data/ moved under ``root``."""
    import yaml
    from kedro.io import DataCatalog

    config = yaml.safe_load((REPO / "conf/base/catalog.yml").read_text())
    for entry in config.values():
        for key in ("filepath", "path"):
            if key in entry and str(entry[key]).startswith("data/"):
                entry[key] = str(root / entry[key])
    return DataCatalog.from_config(config)


def _decode_times(images: list[Path]) -> tuple[float, float]:
    """Seconds to decode ``images`` one after the other: Pillow's load, and into RGB
    arrays as data_processing reads them."""
    start = time.perf_counter()
    for path in images:
        with Image.open(path) as img:
            img.load()  # the decode alone
    pil = time.perf_counter() - start
    start = time.perf_counter()
    for path in images:
        read_image(path, path.parent.name)  # decode + RGB array, as data_processing reads it
    return pil, time.perf_counter() - start


def _nodes_once(her2st: Path, params: dict, out: Path) -> tuple[dict[str, float], int]:
    """The nodes called one after the other, each stage timed; the store written by the
    dataset."""
    stages = {}
    start = time.perf_counter()
    raw = nodes.read_sections({"root": str(her2st)}, params)
    sections, _ = nodes.filter_spots(raw, params)
    stages["read_sections + filter_spots"] = time.perf_counter() - start
    reference = nodes.fit_stain_reference(sections, params)
    stages["fit_stain_reference"] = time.perf_counter() - start - sum(stages.values())
    PatchStoreDataset(str(out)).save(nodes.extract_patches(sections, reference, params))
    stages["extract_patches (to disk)"] = time.perf_counter() - start - sum(stages.values())
    stages["the nodes, one after the other"] = time.perf_counter() - start
    return stages, sum(a.n_obs for a in sections.values())


def _pipeline_once(her2st: Path, params: dict, root: Path) -> float:
    """Wall time of the pipeline as `kedro run --pipelines=data_processing` runs it after
    acquisition: SequentialRunner, the project's catalog (AnnData partitions written and
    read back)."""
    from kedro.runner import SequentialRunner

    from brstnet.pipelines.data_processing import create_pipeline

    catalog = _catalog(root)
    catalog["params:data_processing"] = params
    catalog["raw_manifest"] = {"root": str(her2st)}
    pipeline = create_pipeline().from_nodes("read_sections")
    start = time.perf_counter()
    SequentialRunner().run(pipeline, catalog)
    return time.perf_counter() - start


def default_sections(her2st: Path, workers: int, out: Path, repeats: int) -> None:
    """Decode, nodes and pipeline, each ``repeats`` times in turn; medians (and ranges)."""
    params = {
        "sections": DEFAULT_SECTIONS,
        "source": {"local_dir": str(her2st)},
        "stain": {"reference_section": "C2"},
        "workers": workers,
    }
    load = os.getloadavg()
    images = sorted((her2st / "data/ST-imgs").glob("*/*/*.jpg"))
    images = [p for p in images if p.parent.name in DEFAULT_SECTIONS]
    for path in images:
        path.read_bytes()  # in the page cache for every measurement, the first included
    pil, arrays, stages, walls = [], [], [], []
    for k in range(repeats):
        decode = _decode_times(images)
        pil.append(decode[0])
        arrays.append(decode[1])
        timed, spots = _nodes_once(her2st, params, out / f"nodes_store_{k}")
        stages.append(timed)
        walls.append(_pipeline_once(her2st, params, out / f"project_{k}"))
    after = os.getloadavg()

    def show(label: str, values: list[float]) -> None:
        spread = f"  ({min(values):.1f}-{max(values):.1f})" if len(values) > 1 else ""
        print(f"  {label + ':':34s} {np.median(values):6.1f} s{spread}")

    print(
        f"default sections: {len(images)} JPEGs, {spots} spots, workers={workers}, "
        f"medians of {repeats} runs"
    )
    print(f"  load average before / after:       {load[0]:.2f} / {after[0]:.2f}")
    show("decode the JPEGs (PIL load)", pil)
    show("decode into RGB arrays", arrays)
    for stage in stages[0]:
        show(stage, [timed[stage] for timed in stages])
    show("data_processing (runner+catalog)", walls)
    wall = float(np.median(walls))
    print(f"  ratio to the decode (PIL load):    {wall / np.median(pil):6.2f}x")
    print(f"  ratio to the decode into arrays:   {wall / np.median(arrays):6.2f}x")


def _collection(image: Path, n_sections: int, spots: int) -> dict[str, ad.AnnData]:
    """``n_sections`` sections of ``spots`` spots on a grid over the tissue of ``image``."""
    side = int(np.ceil(np.sqrt(spots)))
    sections = {}
    for k in range(n_sections):
        name = f"S{k:04d}"
        xs, ys = np.meshgrid(np.linspace(2500, 7000, side), np.linspace(2500, 7000, side))
        centres = np.stack([xs.ravel(), ys.ravel()], axis=1)[:spots] + k  # distinct sections
        obs = pd.DataFrame(
            {
                "spot_id": [f"{i}" for i in range(spots)],
                "section": name,
                "patient": f"P{k // 3}",
            },
            index=[f"{name}_{i}" for i in range(spots)],
        )
        adata = ad.AnnData(obs=obs, obsm={"spatial": centres})
        adata.uns.update(section=name, image_path=str(image), pixel_size_um=0.688)
        sections[name] = adata
    return sections


def _tree_memory() -> tuple[int, int]:
    """Resident bytes of this process and all its descendants: the sum of their RSS
    (pages a forked worker shares with its parent counted in each) and of their PSS
    (shared pages split between the processes sharing them: the machine's memory in use)."""
    rss, pss, todo = 0, 0, [os.getpid()]
    while todo:
        pid = todo.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            rss += int(status.split("VmRSS:")[1].split()[0]) * 1024
            pss += int(rollup.split("\nPss:")[1].split()[0]) * 1024
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError):
            continue  # the process ended meanwhile
    return rss, pss


def _build(image: Path, n_sections: int, spots: int, size: int, workers: int, out: Path, queue):
    import threading

    from brstnet.st.stain import fit_stain_reference

    peak, done = [0, 0], threading.Event()

    def sample() -> None:  # the whole tree's resident memory, every 0.2 s
        while not done.wait(0.2):
            peak[:] = map(max, peak, _tree_memory())

    threading.Thread(target=sample, daemon=True).start()

    sections = _collection(image, n_sections, spots)
    reference = fit_stain_reference(next(iter(sections.values())), window_um=1500)
    geometry = PatchGeometry(window_um=206, size_px=size, stain_reference=reference)
    start = time.perf_counter()
    write_patch_store(sections, geometry, out, dataset="synthetic", workers=workers)
    wall = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # GiB (ru_maxrss: KiB)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    done.set()
    tree = (peak[0] / 2**30, peak[1] / 2**30)
    queue.put((wall, own, children, tree, (out / "patches.npy").stat().st_size / 2**30))


def collection(
    her2st: Path, sizes: list[int], spots: int, size: int, workers: int, tmp: Path
) -> None:
    image = next((her2st / "data/ST-imgs/C/C2").glob("*.jpg"))
    context = multiprocessing.get_context("spawn")  # a fresh process: its own peak memory
    rows = []
    for n_sections in sizes:
        out = tmp / f"collection_{n_sections}"
        queue = context.Queue()
        child = context.Process(
            target=_build, args=(image, n_sections, spots, size, workers, out, queue)
        )
        child.start()
        load = os.getloadavg()[0]
        wall, own, children, tree, gib = queue.get()
        child.join()
        shutil.rmtree(out, ignore_errors=True)
        rows.append((n_sections * spots, wall, own, children))
        print(
            f"collection {n_sections} sections x {spots} spots at {size} px ({gib:.1f} GiB of "
            f"patches), workers={workers}: {wall:.1f} s, {1e3 * wall / (n_sections * spots):.2f} "
            f"ms/spot; peak RSS {own:.2f} GiB (main), {children:.2f} GiB (largest worker), "
            f"main + workers at once (sampled): {tree[0]:.2f} GiB RSS, {tree[1]:.2f} GiB PSS; "
            f"load average "
            f"{load:.2f} -> {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    if len(rows) > 1:
        (n0, t0, r0, c0), (n1, t1, r1, c1) = rows[0], rows[-1]
        print(
            f"growth per spot from {n0} to {n1} spots: {1e3 * (t1 - t0) / (n1 - n0):.2f} ms, "
            f"{2**30 * (max(r1, c1) - max(r0, c0)) / (n1 - n0) / 1e3:.1f} kB of peak RSS"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--her2st", type=Path, default=REPO.parent / "shared/data/her2st")
    parser.add_argument("--part", choices=["default", "collection", "both"], default="both")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=3, help="runs of the default part")
    parser.add_argument("--collections", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--spots", type=int, default=1000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.tmp) as folder:
        if args.part in ("default", "both"):
            default_sections(args.her2st, args.workers, Path(folder), args.repeats)
        if args.part in ("collection", "both"):
            collection(
                args.her2st, args.collections, args.spots, args.size, args.workers, Path(folder)
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
