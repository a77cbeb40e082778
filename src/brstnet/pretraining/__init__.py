"""Self-supervised pretraining on every tissue window of the training patients' slides.

- :mod:`.windows`: the slides tiled into windows of the patch store's geometry, kept
  where the tissue mask says tissue, cut once into a resumable memory-mapped store;
- :mod:`.simclr`: SimCLR's NT-Xent loss, projection head and batched views (crop, stain,
  flips and rotations);
- :mod:`.params`: the ``pretraining`` parameters; :mod:`.run_config`: one run's settings
  at a window store's geometry;
- :mod:`.train`: the loop (seeded, atomic checkpoints, exact resume);
- :mod:`.weights`: the trunk as a ``.safetensors`` file that
  :func:`brstnet.models.load_initial_weights` reads;
- :mod:`.probe`: HEST-Bench's PCA + ridge probe on a fold's pretrained trunk.

Free of Kedro and MLflow: the ``pretraining`` pipeline's nodes are thin adapters.
"""
