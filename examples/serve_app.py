"""Serve a model over HTTP: a batching model behind a FastAPI ingress, composed through a
handle, then a rolling redeploy with a new user_config, all on a local cluster.

    python examples/serve_app.py
"""

from __future__ import annotations

import socket

import httpx
from fastapi import FastAPI

import zactor as ray
from zactor import serve

api = FastAPI()


@serve.deployment(num_replicas=2, max_ongoing_requests=16, user_config={"scale": 2})
class Model:
    def reconfigure(self, config: dict) -> None:
        self.scale = config["scale"]

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def __call__(self, xs: list[float]) -> list[float]:
        return [self.scale * x for x in xs]  # one vectorised call per batch


@serve.deployment
@serve.ingress(api)
class Gateway:
    def __init__(self, model) -> None:
        self.model = model  # a DeploymentHandle to Model

    @api.get("/predict")
    async def predict(self, x: float) -> dict:
        return {"x": x, "y": await self.model.remote(x)}


def main() -> None:
    with socket.socket() as s:  # any free port; Ray's default is 8000
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Gateway.bind(Model.bind()), name="demo", route_prefix="/")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        print(client.get("/predict", params={"x": 21}).json())  # {'x': 21.0, 'y': 42.0}
        serve.run(Gateway.bind(Model.options(user_config={"scale": 3}).bind()), name="demo")
        print(client.get("/predict", params={"x": 21}).json())  # {'x': 21.0, 'y': 63.0}
    status = serve.status().applications["demo"]
    print(status.status, {name: d.replica_states for name, d in status.deployments.items()})
    serve.shutdown()
    ray.shutdown()
    print("OK")


if __name__ == "__main__":
    main()
