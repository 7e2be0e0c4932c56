"""A job's driver: `zactor job submit` runs it on the head's machine, in its working dir.

`helper` is a module of the working dir (uploaded with the job); `greeter` is a package of
it too, installed by the job's `pip` list into a virtualenv on each node that runs the job's
code — the driver's and its tasks' alike. See the README's "Run a cluster".
"""

from greeter import greet
from helper import numbers

import zactor

zactor.init()  # in a job: joins the job's cluster


@zactor.remote(scheduling_strategy="SPREAD")
def square(x: int) -> tuple[int, str]:
    import greeter  # the task's worker runs in the job's environment too

    return x * x, greeter.__version__


results = zactor.get([square.remote(x) for x in numbers()])
print(greet(f"the sum of squares is {sum(r[0] for r in results)}"),
      f"(tasks saw greeter {results[0][1]})")
