"""Direct actor calls: a caller sends a call straight to the actor's own socket and gets the
result back the same way, skipping the head's hop in both directions (DESIGN §2 allows this
fast path "as long as ordering and failure semantics stay those of §1").

    caller ──CALL────────────────► actor's ROUTER ──► runs it ──► OBJECT ──► caller's "in"
       └────CALLED (same args) ──► head: books the call, as if it had forwarded it
    actor ──TASK_DONE (results) ─► head: stores them, tells everyone but the caller

Why the order and failure semantics of brokered calls hold:

- The head grants a route (``ROUTE``) only when every call this client made to the actor has
  finished, and the client takes it only if it has sent no call since (``seen`` matches): no
  brokered call can still be ahead of the first direct one.
- While a route is held, every call to that actor goes on one socket: ZeroMQ keeps their order.
- A call that cannot go directly (it carries ObjectRefs or actor handles, whose registration
  with the head must come first, or a large argument) ends the route. It goes through the
  head, which holds it until the direct calls before it have finished.
- The head hears of every direct call (``CALLED``, with its arguments) on the client's usual
  socket, ahead of anything the client sends later, so it can retry or fail the call exactly as
  a brokered one if the actor's process dies. It then revokes the route, and the client asks
  the head for the results it has not received yet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zactor import config
from zactor.comm.transport import dealer, send_parts
from zactor.protocol import Msg, encode

if TYPE_CHECKING:
    from zactor._client import CoreClient


class Routes:
    """One client's direct routes to actors, and what it is owed on them."""

    def __init__(self, client: CoreClient) -> None:
        self.client = client
        self.active: dict[bytes, tuple[str, object]] = {}  # actor id -> (address, DEALER)
        # Open DEALERs by address, active or not. A route that ends while its calls may still
        # sit in the socket's queue keeps the socket: closing it would drop them, and a later
        # route to the same address must follow them on the same connection.
        self.sockets: dict[str, object] = {}
        self.sent: dict[bytes, int] = {}  # actor id -> calls this client sent it, either way
        self.waiting: dict[bytes, bytes] = {}  # result id -> actor id, for direct calls
        self.peers: set[str] = set()  # addresses the inbound socket is connected to

    def send_call(self, actor_id: bytes, spec: list, frames: list, direct_ok: bool,
                  return_ids: list[bytes]) -> None:
        """Send an actor call, directly if a route is held and the call may use it.
        The caller holds the client's send lock."""
        sent = self.sent
        sent[actor_id] = sent.get(actor_id, 0) + 1
        route = self.active.get(actor_id)
        out = self.client.out
        if route is not None:
            if direct_ok:
                address, sock = route
                waiting = self.waiting
                for rid in return_ids:  # before the send: the answer may beat the next line
                    waiting[rid] = actor_id
                send_parts(sock, (encode(Msg.CALL, spec), *frames))
                send_parts(out, (encode(Msg.CALLED, spec, address), *frames))
                return
            # The route ends here; the head holds this call behind the direct ones before it.
            del self.active[actor_id]
        send_parts(out, (encode(Msg.SUBMIT, spec), *frames))

    def reset(self) -> None:
        """Forget every route (the head restarted: it granted none of them). Results still
        owed on them are asked of the head (they are gone, and it says so)."""
        client = self.client
        with client._send_lock:
            self.active.clear()
            self.sent.clear()
            for sock in self.sockets.values():
                sock.close(linger=0)
            self.sockets.clear()
        for address in list(self.peers):
            self._forget_peer(address)
        self.waiting.clear()

    def drop(self, actor_id: bytes) -> None:
        """Stop calling ``actor_id`` directly (this process is about to kill it)."""
        with self.client._send_lock:
            self.active.pop(actor_id, None)

    def on_route(self, actor_id: bytes, address: str, seen: int) -> None:
        """The head granted (``seen`` >= 0) or revoked (-1) a route. Runs on the thread that
        reads the client's inbound socket, the only one that may connect it."""
        client = self.client
        if seen < 0:  # the process at ``address`` is gone: what its socket holds is lost
            with client._send_lock:
                route = self.active.get(actor_id)
                if route is not None and route[0] == address:
                    del self.active[actor_id]
                sock = self.sockets.pop(address, None)
                if sock is not None:
                    sock.close(linger=0)
            self._forget_peer(address)
            self._ask_head(actor_id)
            return
        if config.DIRECT_ROUTES_MAX <= 0:
            return
        evicted = []
        with client._send_lock:
            if self.sent.get(actor_id, 0) != seen or actor_id in self.active or client._closed:
                return  # calls were sent since the head looked: a later grant will come
            if address not in self.peers:
                # Before the first call, so the actor can answer it directly (if this
                # connection is not up yet when it answers, it leaves the answer to the head).
                client.inp.connect(address)
                self.peers.add(address)
            sock = self.sockets.get(address)
            if sock is None:
                while self.sockets and len(self.sockets) >= config.DIRECT_ROUTES_MAX:
                    evicted.append(self._evict_locked())
                sock = self.sockets[address] = dealer(client.ctx, client.key + b">", address)
            self.active[actor_id] = (address, sock)
        for old_actor, old_address in evicted:
            self._forget_peer(old_address)
            if old_actor is not None:
                self._ask_head(old_actor)

    def _evict_locked(self) -> tuple[bytes | None, str]:
        address = next(iter(self.sockets))
        sock = self.sockets.pop(address)
        owner = None
        for actor_id, route in list(self.active.items()):
            if route[0] == address:
                owner = actor_id
                del self.active[actor_id]
        # Its calls, if any are still queued, leave first; a route to it again needs them all
        # finished (the head grants only then), so a new socket cannot overtake them.
        sock.close(linger=1000)
        return owner, address

    def _forget_peer(self, address: str) -> None:
        if address in self.peers:
            self.peers.discard(address)
            try:
                self.client.inp.disconnect(address)
            except Exception:  # noqa: BLE001 - already gone
                pass

    def _ask_head(self, actor_id: bytes) -> None:
        """Results of direct calls to ``actor_id`` not received yet will come from the head:
        the actor's process may have died before they left it."""
        client = self.client
        mine = [rid for rid, a in list(self.waiting.items()) if a == actor_id]
        if not mine:
            return
        for rid in mine:
            self.waiting.pop(rid, None)
        with client._lock:
            ids = [rid for rid in mine
                   if rid not in client._objects and rid not in client._dropped]
            client._subscribed.update(ids)
        if ids:
            client.send(encode(Msg.SUBSCRIBE, ids))
