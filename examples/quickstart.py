"""zactor in one page: tasks, actors and objects.

Run it with ``.venv/bin/python examples/quickstart.py``. Every line works unchanged with
``import ray`` in place of ``import zactor``: zactor speaks Ray Core's API.
"""

import zactor


@zactor.remote
def square(x: int) -> int:
    return x * x


@zactor.remote
def total(values: list[int]) -> int:
    return sum(values)


@zactor.remote
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.value = start

    def add(self, n: int) -> int:
        self.value += n
        return self.value


def main() -> None:
    zactor.init()  # no address: start an embedded local cluster, one worker per core

    # Tasks: .remote() returns an ObjectRef at once; get() waits for the value.
    refs = [square.remote(i) for i in range(8)]
    print("squares:", zactor.get(refs))

    # Pass a ref to another task: zactor resolves it to its value before the task runs,
    # and the intermediate result never goes through the driver.
    print("square of a square:", zactor.get(square.remote(square.remote(3))))

    # Objects: put() stores a value once; any number of tasks can read it.
    data_ref = zactor.put(list(range(100)))
    print("sum of put data:", zactor.get(total.remote(data_ref)))

    # wait(): take results as they finish instead of all at once.
    pending = [square.remote(i) for i in range(4)]
    ready, pending = zactor.wait(pending, num_returns=2)
    print(f"wait: {len(ready)} ready, {len(pending)} still pending")

    # Actors: a stateful worker; calls on one handle run in submission order.
    counter = Counter.remote(start=10)
    for n in (1, 2, 3):
        counter.add.remote(n)
    print("counter:", zactor.get(counter.add.remote(0)))

    zactor.shutdown()


if __name__ == "__main__":
    main()
