"""Sockets and their security, in one place: ``transport`` (ZeroMQ sockets and the fast send
and receive paths the event loops use) and ``security`` (the cluster's CURVE keys, the ZAP
handler, the count of refused connections). Message shapes live in ``zactor.protocol``."""
