"""A three-stage pipeline under a rest_for_one supervisor.

    parse ──► enrich ──► store          (started in this order)

The enrich stage crashes (its process exits) on a poison record. Under ``rest_for_one`` the
supervisor restarts enrich and every stage started after it (store), but not parse. The store
keeps its results across restarts with the checkpoint hooks, so nothing already stored is
lost; the crashing record is retried once and then skipped. Calls are at-least-once across
restarts, so the store's put is idempotent.

Run: python examples/supervised_pipeline.py
"""

from __future__ import annotations

import os

import zactor
from zactor import supervision


@zactor.remote
class Parse:
    def run(self, line: str) -> dict:
        key, _, value = line.partition("=")
        return {"key": key.strip(), "value": int(value)}


@zactor.remote
class Enrich:
    def __init__(self) -> None:
        self.seen = 0

    def run(self, record: dict) -> dict:
        self.seen += 1
        if record["key"] == "poison":
            os._exit(1)  # a crash, not an exception: the process is gone
        return {**record, "square": record["value"] ** 2}


@zactor.remote
class Store:
    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}

    def put(self, record: dict) -> int:
        self.rows[record["key"]] = record  # idempotent: a replayed put changes nothing
        return len(self.rows)

    def all(self) -> list[dict]:
        return sorted(self.rows.values(), key=lambda r: r["key"])

    # Checkpoint hooks: saved after every call, restored after a restart.
    def __zactor_checkpoint__(self) -> dict[str, dict]:
        return self.rows

    def __zactor_restore__(self, rows: dict[str, dict]) -> None:
        self.rows = rows


def main() -> None:
    zactor.init()
    sup = supervision.start(
        [supervision.ChildSpec("parse", Parse),
         supervision.ChildSpec("enrich", Enrich),
         supervision.ChildSpec("store", Store)],
        name="pipeline", strategy="rest_for_one", max_restarts=5, period=10.0)
    parse, enrich, store = (sup.child(n) for n in ("parse", "enrich", "store"))
    lines = ["a = 1", "b = 2", "poison = 0", "c = 3", "d = 4"]
    skipped = []
    for line in lines:
        record = zactor.get(parse.run.remote(line))
        for attempt in (1, 2):
            try:
                enriched = zactor.get(enrich.run.remote(record))
                zactor.get(store.put.remote(enriched))
                break
            except zactor.exceptions.ActorUnavailableError as e:
                # Enrich crashed on this record, or the call met a restart already under
                # way; either way it may be retried, since store.put is idempotent.
                stage = str(e).split()[1]
                print(f"{stage} was unavailable for {line!r} (attempt {attempt}); "
                      "the supervisor restarts enrich and store")
        else:
            skipped.append(line)
    rows = zactor.get(store.all.remote())
    print("stored:", [(r["key"], r["square"]) for r in rows])
    print("skipped:", skipped)
    print("children:", [(c["name"], c["restarts"]) for c in sup.which_children()])
    assert [r["key"] for r in rows] == ["a", "b", "c", "d"], rows
    sup.stop()
    zactor.shutdown()
    print("OK")


if __name__ == "__main__":
    main()
