"""A worker started as a fresh interpreter (one of a runtime environment's virtualenv, see
zactor.worker.environment): its configuration comes in ZACTOR_WORKER_CFG."""

import json
import os
import sys

from zactor import _process
from zactor.worker import main

if __name__ == "__main__":
    cfg = json.loads(os.environ.pop("ZACTOR_WORKER_CFG"))
    _process.set_process_name("zactor-worker")
    sys.exit(main.run(cfg))
