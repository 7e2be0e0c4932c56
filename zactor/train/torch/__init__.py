"""``zactor.train.torch``: PyTorch data-parallel training (Ray's ``ray.train.torch``).

Every worker joins one ``torch.distributed`` process group (gloo on CPUs, NCCL on GPUs)
before the training function starts; ``prepare_model`` wraps the model in
DistributedDataParallel and ``prepare_data_loader`` gives each worker its share of a
DataLoader's samples.

Example::

    def loop(config):
        model = zactor.train.torch.prepare_model(torch.nn.Linear(4, 1))
        loader = zactor.train.torch.prepare_data_loader(DataLoader(data, batch_size=32))
        for x, y in loader:
            ...

    TorchTrainer(loop, scaling_config=ScalingConfig(num_workers=2)).fit()
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import zactor
from zactor.train import context
from zactor.train._worker_group import Backend, WorkerGroup
from zactor.train.predictor import Predictor
from zactor.train.trainer import DataParallelTrainer


@dataclass
class TorchConfig:
    """``backend``: "gloo", "nccl" or None (NCCL when the workers have GPUs, else gloo);
    ``timeout_s``: how long a collective may wait for the other workers."""

    backend: str | None = None
    init_method: str = "tcp"
    timeout_s: int = 1800


class _TorchBackend(Backend):
    def __init__(self, config: TorchConfig) -> None:
        self.config = config

    def on_start(self, group: WorkerGroup) -> Any:
        port = zactor.get(group.workers[0].free_port.remote())
        return {"address": group.placement[0]["address"], "port": port}

    def on_worker_start(self, session: context._Session, info: Any) -> None:
        import torch
        import torch.distributed as dist

        gpus = session.extra.get("gpu_ids") or []
        use_cuda = bool(gpus) and torch.cuda.is_available()
        backend = self.config.backend or ("nccl" if use_cuda else "gloo")
        if use_cuda:
            torch.cuda.set_device(0)  # the worker sees only its own GPU(s)
        session.extra["device"] = torch.device("cuda", 0) if use_cuda else \
            torch.device("cpu")
        os.environ.update({
            "MASTER_ADDR": str(info["address"]), "MASTER_PORT": str(info["port"]),
            "RANK": str(session.world_rank), "WORLD_SIZE": str(session.world_size),
            "LOCAL_RANK": str(session.local_rank),
            "LOCAL_WORLD_SIZE": str(session.local_world_size),
            "NODE_RANK": str(session.node_rank)})
        dist.init_process_group(backend, init_method=f"tcp://{info['address']}:{info['port']}",
                                rank=session.world_rank, world_size=session.world_size,
                                timeout=timedelta(seconds=self.config.timeout_s))

    def on_worker_end(self, session: context._Session) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


class TorchTrainer(DataParallelTrainer):
    """A ``DataParallelTrainer`` whose workers share a torch.distributed process group."""

    def __init__(self, train_loop_per_worker, *, train_loop_config: dict | None = None,
                 torch_config: TorchConfig | None = None, scaling_config=None,
                 run_config=None, datasets: dict | None = None,
                 resume_from_checkpoint=None, **kwargs) -> None:
        super().__init__(train_loop_per_worker, train_loop_config=train_loop_config,
                         scaling_config=scaling_config, run_config=run_config,
                         datasets=datasets, resume_from_checkpoint=resume_from_checkpoint,
                         **kwargs)
        self.torch_config = torch_config or TorchConfig()

    def _backend(self) -> Backend:
        return _TorchBackend(self.torch_config)


def get_device():
    """The torch device of this worker: its GPU, or the CPU."""
    import torch

    session = context._session
    if session is not None and "device" in session.extra:
        return session.extra["device"]
    return torch.device("cuda", 0) if zactor.get_gpu_ids() and torch.cuda.is_available() \
        else torch.device("cpu")


def get_devices() -> list:
    return [get_device()]


def prepare_model(model, move_to_device: bool | Any = True, parallel_strategy: str | None = "ddp",
                  parallel_strategy_kwargs: dict | None = None):
    """``model`` on this worker's device, wrapped in DistributedDataParallel when there are
    several workers (``parallel_strategy=None``: not wrapped)."""
    import torch
    from torch.nn.parallel import DistributedDataParallel

    device = get_device() if move_to_device is True else move_to_device
    if move_to_device:
        model = model.to(device)
    if parallel_strategy not in ("ddp", None):
        raise ValueError(f"parallel_strategy must be 'ddp' or None, got {parallel_strategy!r}")
    if parallel_strategy is None or not torch.distributed.is_initialized() or \
            torch.distributed.get_world_size() < 2:
        return model
    kwargs = dict(parallel_strategy_kwargs or {})
    if device.type == "cuda":
        kwargs.setdefault("device_ids", [device])
    return DistributedDataParallel(model, **kwargs)


def prepare_data_loader(data_loader, add_dist_sampler: bool = True,
                        move_to_device: bool = True, auto_transfer: bool = True):
    """``data_loader`` with a DistributedSampler (each worker a disjoint share of the
    samples; a new shuffle each epoch), whose batches come on this worker's device."""
    import torch.distributed as dist
    from torch.utils.data import DataLoader, DistributedSampler, IterableDataset, RandomSampler

    if add_dist_sampler and dist.is_initialized() and dist.get_world_size() > 1 and \
            not isinstance(data_loader.dataset, IterableDataset) and \
            not isinstance(data_loader.sampler, DistributedSampler):
        sampler = DistributedSampler(data_loader.dataset, num_replicas=dist.get_world_size(),
                                     rank=dist.get_rank(),
                                     shuffle=isinstance(data_loader.sampler, RandomSampler))
        data_loader = DataLoader(
            data_loader.dataset, batch_size=data_loader.batch_size, sampler=sampler,
            num_workers=data_loader.num_workers, collate_fn=data_loader.collate_fn,
            pin_memory=data_loader.pin_memory, drop_last=data_loader.drop_last,
            timeout=data_loader.timeout, worker_init_fn=data_loader.worker_init_fn,
            generator=data_loader.generator)
    if move_to_device:
        return _DeviceLoader(data_loader, get_device())
    return data_loader


class _DeviceLoader:
    """A DataLoader whose batches are moved to ``device``, and whose DistributedSampler
    gets the epoch number on every pass (a different shuffle each epoch, as in Ray)."""

    def __init__(self, loader, device) -> None:
        self._loader, self._device, self._epoch = loader, device, 0

    def __len__(self) -> int:
        return len(self._loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def __iter__(self):
        sampler = getattr(self._loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self._epoch)
        self._epoch += 1
        for batch in self._loader:
            yield _move(batch, self._device)


def _move(batch, device):
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _move(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_move(v, device) for v in batch)
    return batch


def enable_reproducibility(seed: int = 0) -> None:
    """Seed torch, numpy and random, and ask torch for deterministic kernels."""
    import random

    import numpy as np
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    torch.use_deterministic_algorithms(True)




class TorchPredictor(Predictor):
    """Scores batches with a torch model (Ray AIR's ``TorchPredictor``): the features as
    one float tensor of shape (rows, columns), or the single column's tensor."""

    def __init__(self, model, preprocessor: Any = None, use_gpu: bool = False) -> None:
        import torch

        self.device = torch.device("cuda", 0) if use_gpu and torch.cuda.is_available() \
            else torch.device("cpu")
        self.model = model.to(self.device).eval()
        self.preprocessor = preprocessor

    @classmethod
    def from_checkpoint(cls, checkpoint, model=None, use_gpu: bool = False,
                        filename: str = "model.pt") -> TorchPredictor:
        """The model saved in ``checkpoint``'s ``model.pt``: a whole module, or a state
        dict loaded into ``model``."""
        import torch

        with checkpoint.as_directory() as d:
            saved = torch.load(os.path.join(d, filename), map_location="cpu",
                               weights_only=False)
        if isinstance(saved, torch.nn.Module):
            model = saved
        elif model is None:
            raise ValueError(f"{filename} in the checkpoint holds a state dict: pass the "
                             "model to load it into (model=...)")
        else:
            model.load_state_dict(saved)
        return cls(model, use_gpu=use_gpu)

    def predict(self, data, dtype: Any = None, **_kwargs):
        import numpy as np
        import torch

        if self.preprocessor is not None:
            data = self.preprocessor.transform_batch(data)
        values = data.to_numpy() if hasattr(data, "to_numpy") else np.asarray(data)
        if values.dtype == object:  # a column of arrays
            values = np.stack(values[:, 0]) if values.shape[1] == 1 else np.stack(
                [np.concatenate(list(row)) for row in values])
        tensor = torch.as_tensor(values, dtype=dtype or torch.float32, device=self.device)
        with torch.no_grad():
            out = self.model(tensor).cpu().numpy()
        import pandas as pd

        return pd.DataFrame({"predictions": list(out) if out.ndim > 1 and out.shape[1] > 1
                             else out.reshape(-1)})


__all__ = ["TorchConfig", "TorchPredictor", "TorchTrainer", "enable_reproducibility",
           "get_device", "get_devices", "prepare_data_loader", "prepare_model"]
