"""Batches from the memory-mapped patch store, and augmentation on the device.

The loader only copies uint8 bytes: one fancy-indexed read per batch from the store
(``__getitems__``), no per-patch Python work, no decoding. Conversion to float,
normalisation and the dihedral augmentation run on the device, on whole batches.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler
from tqdm.auto import tqdm


class PatchBatches(Dataset):
    """Patches (store rows) with their targets.

    Args:
        patches: [N_store, H, W, 3] uint8 (a memory map is fine).
        rows: [n] rows of ``patches`` to use.
        targets: [n, n_main] float32 or None.
        aux: [n, n_aux] float32 or None.
        log_depth: [n] each spot's log total count, or None: validation then also
            reports the partial r given read depth.
        depth_targets: [n] the depth head's targets (z-scored log total count), or None.
        neighbours: [n, K] each spot's grid neighbours as positions in ``rows`` (-1 where
            none; :func:`brstnet.st.neighbours.spot_neighbours`), for a context model.
        groups: [n] each spot's section as an integer code (the context's section mean).
    """

    def __init__(
        self,
        patches: np.ndarray,
        rows: np.ndarray,
        targets: np.ndarray | None = None,
        aux: np.ndarray | None = None,
        log_depth: np.ndarray | None = None,
        depth_targets: np.ndarray | None = None,
        neighbours: np.ndarray | None = None,
        groups: np.ndarray | None = None,
    ) -> None:
        self.patches = patches
        self.rows = np.asarray(rows, dtype=np.int64)
        self.targets = None if targets is None else np.ascontiguousarray(targets, dtype=np.float32)
        self.aux = (
            None
            if aux is None or aux.shape[1] == 0
            else np.ascontiguousarray(aux, dtype=np.float32)
        )
        self.log_depth = None if log_depth is None else np.asarray(log_depth, dtype=np.float64)
        self.depth_targets = (
            None if depth_targets is None else np.asarray(depth_targets, dtype=np.float32)
        )
        self.neighbours = None if neighbours is None else np.asarray(neighbours, dtype=np.int64)
        self.groups = (
            None
            if groups is None
            else np.unique(np.asarray(groups), return_inverse=True)[1].astype(np.int64)
        )
        for name, array in (
            ("targets", self.targets),
            ("aux", self.aux),
            ("log_depth", self.log_depth),
            ("depth_targets", self.depth_targets),
            ("neighbours", self.neighbours),
            ("groups", self.groups),
        ):
            if array is not None and len(array) != len(self.rows):
                raise ValueError(f"{name} has {len(array)} rows for {len(self.rows)} patches")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([i])

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        rows = self.rows[idx]
        order = np.argsort(rows, kind="stable")  # sequential reads from the memory map
        images = np.empty((len(rows), *self.patches.shape[1:]), dtype=np.uint8)
        images[order] = self.patches[rows[order]]
        batch = {"images": torch.from_numpy(images), "index": torch.from_numpy(idx)}
        if self.targets is not None:
            batch["targets"] = torch.from_numpy(self.targets[idx])
        if self.aux is not None:
            batch["aux"] = torch.from_numpy(self.aux[idx])
        if self.depth_targets is not None:
            batch["depth"] = torch.from_numpy(self.depth_targets[idx])
        return batch


def _identity(batch):
    return batch


def make_loader(
    data: PatchBatches,
    *,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader that fetches whole batches with one store read each.

    Only the sampler draws from ``generator`` (one permutation per epoch). The loader
    itself gets a private generator for the worker base seed it draws whenever an
    iterator starts (every epoch without workers, once with persistent workers): drawn
    from ``generator`` or torch's global RNG, it would make the shuffles, augmentation
    and dropout depend on the number of workers, and a resumed run differ from an
    uninterrupted one. The workers do no random work.
    """
    sampler = RandomSampler(data, generator=generator) if shuffle else SequentialSampler(data)
    return DataLoader(
        data,
        batch_size=batch_size,
        sampler=sampler,
        generator=torch.Generator().manual_seed(0),
        collate_fn=_identity,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
        drop_last=False,
    )


class InputNormaliser:
    """uint8 patches -> the model's normalised float input, on one device.

    The constants are built once (from the model's own ``pixel_mean`` / ``pixel_std``,
    which its :class:`~brstnet.models.ModelSpec` fixed), so training, evaluation and
    inference normalise exactly alike.

    Args:
        mean: Per-channel mean (RGB, 0-1 scale).
        std: Per-channel standard deviation.
        device: Where the batches are converted.
        channels_last: Return channels-last tensors (faster convolutions on GPU).
    """

    def __init__(
        self,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        device: torch.device,
        *,
        channels_last: bool = False,
    ) -> None:
        self.device = device
        self.mean = torch.tensor(mean, device=device, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device, dtype=torch.float32).view(1, 3, 1, 1)
        self.channels_last = channels_last

    @classmethod
    def for_task(cls, task: torch.nn.Module, device: torch.device, *, channels_last: bool = False):
        """The normaliser of an :class:`~brstnet.models.ExpressionTask`'s model."""
        model = task.model
        return cls(model.pixel_mean, model.pixel_std, device, channels_last=channels_last)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """[B, H, W, 3] uint8 (host) -> [B, 3, H, W] float, normalised, on the device."""
        return self.standardise(self.to_unit(images))

    def to_unit(self, images: torch.Tensor) -> torch.Tensor:
        """[B, H, W, 3] uint8 (host) -> [B, 3, H, W] float in [0, 1] on the device."""
        return images.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1] -> the model's input (its mean and std; channels_last)."""
        x = (x - self.mean) / self.std
        if self.channels_last:
            return x.contiguous(memory_format=torch.channels_last)
        return x.contiguous()


#: The k-th symmetry of :func:`dihedral_transform` as (transpose, flip W, flip H), in that order.
_DIHEDRAL_STEPS = torch.tensor(
    [[0, 0, 0], [1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 1, 0], [1, 1, 1], [0, 0, 1], [1, 0, 0]],
    dtype=torch.bool,
)


def epoch_batches(loader: DataLoader, desc: str, epoch: int, epochs: int) -> tqdm:
    """One epoch's batches of ``loader`` behind a progress bar (``<desc> epoch k/n``).

    One ``iter()`` per epoch: tqdm.auto calls ``iter()`` on an iterable it is given, and
    each call restarts persistent workers (a wasted permutation and prefetch per epoch).
    """
    return tqdm(
        iter(loader),
        total=len(loader),
        desc=f"{desc} epoch {epoch + 1}/{epochs}",
        unit="batch",
        leave=False,
    )


def dihedral(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips and 90 degree rotations, drawn per sample (BrST-Net).

    One pass over the whole batch (a transpose and two flips, each kept per sample with
    ``torch.where``): no Python loop over the symmetries and no host synchronisation.
    Sample i gets ``dihedral_transform(images[i], k_i)`` exactly, k_i drawn from ``generator``.

    Args:
        images: [B, C, H, W] square images.
        generator: CPU generator (reproducible draws whatever the device).
    """
    draws = torch.randint(0, 8, (images.shape[0],), generator=generator)
    steps = _DIHEDRAL_STEPS[draws].to(images.device, non_blocking=True).view(-1, 3, 1, 1, 1)
    out = torch.where(steps[:, 0], images.transpose(-2, -1), images)
    out = torch.where(steps[:, 1], out.flip(-1), out)
    out = torch.where(steps[:, 2], out.flip(-2), out)
    channels_last = images.is_contiguous(memory_format=torch.channels_last)
    return out.contiguous(
        memory_format=torch.channels_last if channels_last else torch.contiguous_format
    )


def dihedral_transform(images: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the 8 symmetries of the square (k = 0 is the identity)."""
    out = torch.rot90(images, k % 4, dims=(-2, -1))
    return torch.flip(out, dims=(-1,)) if k >= 4 else out


def color_jitter(images: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Per-sample brightness and contrast jitter on normalised images (strength 0 = off)."""
    if strength <= 0:
        return images
    b = images.shape[0]
    brightness = (torch.rand(b, generator=generator) * 2 - 1) * strength
    contrast = 1 + (torch.rand(b, generator=generator) * 2 - 1) * strength
    brightness = brightness.to(images.device).view(b, 1, 1, 1)
    contrast = contrast.to(images.device).view(b, 1, 1, 1)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - mean) * contrast + mean + brightness
