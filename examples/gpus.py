"""GPUs: whole devices, shared halves, and what each task or actor sees.

Declares two GPUs (so it runs anywhere); on a machine with real ones, pass --real to use
what nvidia-smi reports instead, and each actor also allocates a tensor on its device if
torch with CUDA is installed.

    python examples/gpus.py          # two declared GPUs
    python examples/gpus.py --real   # the machine's GPUs
"""

import os
import sys

import zactor


@zactor.remote(num_gpus=1)
def whole() -> tuple[list, str]:
    return zactor.get_gpu_ids(), os.environ["CUDA_VISIBLE_DEVICES"]


@zactor.remote(num_gpus=0.5, num_cpus=0)
class Half:
    def device(self) -> tuple[list, str]:
        ids = zactor.get_gpu_ids()
        try:
            import torch
        except ImportError:
            return ids, "torch not installed"
        if not torch.cuda.is_available():
            return ids, "no CUDA device here (declared GPUs)"
        x = torch.ones(1024, 1024, device="cuda")  # this process's own allocation
        return ids, f"{torch.cuda.get_device_name(0)}: allocated {x.numel() * 4 >> 20} MiB"


def main() -> None:
    real = "--real" in sys.argv
    zactor.init(num_cpus=2, **({} if real else {"num_gpus": 2}))
    gpus = zactor.cluster_resources().get("GPU", 0)
    print(f"{gpus:g} GPU(s)")
    if gpus >= 2:
        firsts = zactor.get([whole.remote(), whole.remote()])
        print("two whole-GPU tasks:", firsts)
    halves = [Half.remote(), Half.remote()]
    seen = zactor.get([h.device.remote() for h in halves])
    for i, (ids, what) in enumerate(seen):
        print(f"half {i}: device {ids}, {what}")
    assert seen[0][0] == seen[1][0], "two halves share one device"
    print("OK")
    zactor.shutdown()


if __name__ == "__main__":
    main()
