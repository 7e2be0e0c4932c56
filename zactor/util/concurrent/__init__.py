"""Ray's ``ray.util.concurrent``: see ``zactor.util.concurrent.futures``."""
