"""Integrations of zactor.tune with other libraries (Ray's ``ray.tune.integration``)."""
