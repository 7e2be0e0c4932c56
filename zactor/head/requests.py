"""REQUEST messages: a client asks the head something and gets one REPLY (or, for a few, a
later one: ``watch_actor`` when the actor's process dies, ``alloc`` once the store has room).

One table from the request's name to a small method; each returns the value to reply with.
A method raising LookupError, TypeError or ValueError replies with that error, which the
client raises (zactor._client._reply_error).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from zactor.head import memory, metrics, state, status
from zactor.protocol import Msg, ProtocolError, encode

if TYPE_CHECKING:
    from zactor.head.broker import Broker
    from zactor.head.records import Client

#: The answer a method gives when it will reply later itself.
LATER = object()


class Requests:
    def __init__(self, head: Broker) -> None:
        self.head = head
        self.table = {
            "cluster_resources": self.cluster_resources,
            "available_resources": self.available_resources,
            "nodes": self.nodes,
            "cluster_status": self.cluster_status,
            "ping": self.ping,
            "job_submit": lambda c, a, r: self.head.jobs.submit(a),
            "job_info": lambda c, a, r: self.head.jobs.info(a),
            "job_list": lambda c, a, r: self.head.jobs.list(),
            "job_logs": lambda c, a, r: self.head.jobs.logs(*a),
            "job_stop": lambda c, a, r: self.head.jobs.stop(a),
            "job_delete": lambda c, a, r: self.head.jobs.delete(a),
            "package_has": lambda c, a, r: self.head.envs.packages.has(a),
            "package_put": lambda c, a, r: self.head.envs.packages.put(c.key, *a),
            "env_register": lambda c, a, r: self.head.envs.register(*a),
            "pg_create": lambda c, a, r: self.head.pgs.create(c, a),
            "pg_remove": lambda c, a, r: self.head.pgs.remove(a),
            "pg_get": lambda c, a, r: self.head.pgs.get_by_name(a[0], a[1] or c.namespace),
            "pg_table": lambda c, a, r: self.head.pgs.table(a),
            "pg_specs": lambda c, a, r: self.head.pgs.bundle_specs(a),
            "reserve_name": self.reserve_name,
            "get_actor": self.get_actor,
            "list_named_actors": self.list_named_actors,
            "watch_actor": self.watch_actor,
            "actor_state": self.actor_state,
            "restart_actor": self.restart_actor,
            "exit_actor": self.exit_actor,
            "alloc": self.alloc,
            "prealloc": self.prealloc,
            "abandon": self.abandon,
            "adopt": self.adopt,
            "outstanding": self.outstanding,
            "memory": self.memory,
            # zactor.util.state: list_*, summarize_*, timeline (zactor.head.state)
            "state": lambda c, a, r: state.query(self.head, a),
            "state_summary": lambda c, a, r: state.summary(self.head, a),
            "timeline": lambda c, a, r: state.timeline(self.head, a),
            # zactor logs, zactor.util.state.list_logs / get_log (zactor.node.logs)
            "logs": self.logs,
            # Prometheus (zactor._metrics_export) and zactor.util.metrics (zactor.head.metrics)
            "metrics": lambda c, a, r: metrics.snapshot(self.head),
            "metrics_report": self.metrics_report,
            "stats": self.stats,
            "store_stats": self.store_stats,
            "worker_pids": self.worker_pids,
            "objects_exist": self.objects_exist,
            "lose_object": self.lose_object,
        }

    def handle(self, client: Client, req_id: int, what: str, args: Any) -> None:
        method = self.table.get(what)
        try:
            if method is None:
                raise ValueError(f"unknown request {what!r}")
            value = method(client, args, req_id)
            if value is LATER:
                return
            ok = True
        except LookupError as exc:
            kind = "ActorNameTakenError" if what == "reserve_name" else "ValueError"
            value, ok = [kind, str(exc.args[0])], False
        except (TypeError, ValueError) as exc:
            value, ok = [type(exc).__name__, str(exc)], False
        self.reply(client, req_id, ok, value)

    def reply(self, client: Client, req_id: int, ok: bool, value: Any) -> None:
        self.head.send(client.inbox, encode(Msg.REPLY, req_id, ok, value))

    def _store(self, client: Client):
        if client.node is not None:
            return client.node.agent.store
        head = self.head
        if head.head_node is None or head.tcp is None:
            raise ValueError("this process runs on a machine without a zactor node, so it "
                             "has no object store to write large objects into")
        return head.head_node.agent.store  # it pushes them there (zactor._object_store)

    # -- the cluster -------------------------------------------------------------------------

    def cluster_resources(self, client: Client, args: Any, req_id: int) -> Any:
        return self.head.scheduler.totals()

    def available_resources(self, client: Client, args: Any, req_id: int) -> Any:
        return self.head.scheduler.availability()

    def nodes(self, client: Client, args: Any, req_id: int) -> Any:
        head = self.head
        out = []
        for n in head.scheduler.nodes.values():
            transfer = head.transfer_address_of(n) or ""
            port = int(transfer.rsplit(":", 1)[1]) if transfer.startswith("tcp://") else 0
            out.append({
                "NodeID": n.node_id.hex(), "Alive": n.alive, "Resources": n.total,
                "NodeManagerAddress": n.info.get("ip", "127.0.0.1"),
                "NodeManagerHostname": n.info.get("hostname", ""),
                "NodeManagerPort": port, "ObjectManagerPort": port,
                "ObjectStoreSocketName": (n.info.get("arena") or [""])[0],
                "NodeName": n.info.get("ip", "127.0.0.1"), "alive": n.alive,
                "IsHead": n is head.head_node, "Labels": {},
            })
        return out

    def ping(self, client: Client, args: Any, req_id: int) -> Any:
        """A driver on TCP is alive (see Broker._check_clients)."""
        client.last_ping = time.monotonic()
        return None

    def cluster_status(self, client: Client, args: Any, req_id: int) -> Any:
        """zactor status: nodes, actors by state, pending work, refusals."""
        return status.report(self.head)

    def metrics_report(self, client: Client, args: Any, req_id: int) -> Any:
        """A process's user metrics since its last report (zactor.util.metrics, sent with
        ``tell``: request id 0, no reply is sent)."""
        self.head.user_metrics.report(args)
        return LATER if req_id == 0 else True

    def outstanding(self, client: Client, args: Any, req_id: int) -> Any:
        """Tasks and calls of this client not finished yet (a driver exiting waits for them)."""
        return sum(1 for t in self.head.tasks.tasks.values()
                   if t.owner == client.key and t.state != "done")

    # -- actors ------------------------------------------------------------------------------

    def reserve_name(self, client: Client, args: Any, req_id: int) -> Any:
        actor_id, name, namespace, get_if_exists = args
        return self.head.actors.reserve_name(client, actor_id, name, namespace, get_if_exists)

    def get_actor(self, client: Client, args: Any, req_id: int) -> Any:
        name, namespace = args
        return self.head.actors.lookup(client, name, namespace)

    def list_named_actors(self, client: Client, args: Any, req_id: int) -> Any:
        return self.head.actors.named(args)

    def watch_actor(self, client: Client, args: Any, req_id: int) -> Any:
        """Answered when the actor's process next dies (now, if it is dead)."""
        if self.head.actors.watch_exit(client, req_id, args):
            return LATER
        return [args, "dead", "dead"]

    def actor_state(self, client: Client, args: Any, req_id: int) -> Any:
        actor = self.head.actors.actors.get(args)
        return [actor.state, actor.restarts] if actor else ["dead", 0]

    def restart_actor(self, client: Client, args: Any, req_id: int) -> Any:
        return self.head.actors.supervisor_restart(args)

    def exit_actor(self, client: Client, args: Any, req_id: int) -> Any:
        """The actor's own worker ends it for good (zactor.actor.exit_actor)."""
        worker = client.worker
        if worker is not None and worker.actor is not None and worker.actor.actor_id == args:
            self.head.actors.exited(worker.actor)
        return True

    # -- log files ---------------------------------------------------------------------------

    def logs(self, client: Client, args: Any, req_id: int) -> Any:
        """``[node id (hex, or a unique prefix of one; None: the head's node), op, args]``:
        list or read that node's log files (zactor.node.logs). The head reads its own
        node's itself; another node's agent is asked (LOG_READ), and the reply goes when it
        answers, or fails when it does not (zactor.head.nodes.RemoteAgent.read_logs)."""
        if not (isinstance(args, list) and len(args) == 3 and isinstance(args[1], str)):
            raise ValueError("logs: expected [node id, operation, arguments]")
        node_hex, op, op_args = args
        head = self.head
        if node_hex is None:
            node = head.head_node
            if node is None:
                raise ValueError("the head runs no node of its own: name a node (node_id)")
        else:
            node = self._node_by_hex(node_hex)
        if not node.alive:
            raise ValueError(f"node {node.node_id.hex()[:12]} is dead: the logs of dead nodes "
                             "cannot be read")
        node.agent.read_logs(op, op_args,
                             lambda ok, value: self.reply(client, req_id, ok, value))
        return LATER

    def _node_by_hex(self, text: Any) -> Any:
        if not isinstance(text, str) or not text or \
                any(ch not in "0123456789abcdef" for ch in text.lower()):
            raise ValueError(f"{text!r} is not a node id")
        text = text.lower()
        found = [n for n in self.head.scheduler.nodes.values()
                 if n.node_id.hex().startswith(text)]
        if not found:
            raise ValueError(f"no node with id {text}")
        if len(found) > 1:
            raise ValueError(f"{text} is the start of several nodes' ids: give more of it")
        return found[0]

    # -- the object store --------------------------------------------------------------------

    def alloc(self, client: Client, args: Any, req_id: int) -> Any:
        """Room for a large object: answered once there is some (spilling may come first)."""
        if not (isinstance(args, list) and len(args) == 2 and isinstance(args[0], bytes)
                and isinstance(args[1], int) and args[1] >= 0):
            raise ProtocolError("alloc: expected [object id, size]")

        def respond(value: list) -> None:
            self.reply(client, req_id, True, value)

        self._store(client).allocate(client.key, args[0], args[1], respond)
        return LATER

    def prealloc(self, client: Client, args: Any, req_id: int) -> Any:
        """A spare region for the client's next large write (zactor._object_store)."""
        if not isinstance(args, int):
            raise ProtocolError("prealloc: expected a length")
        if client.node is None:
            return ["none"]  # no spare regions for writes that travel over the network
        self._store(client).preallocate(
            client.key, args, lambda value: self.reply(client, req_id, True, value))
        return LATER

    def abandon(self, client: Client, args: Any, req_id: int) -> Any:
        """A writer could not fill, or did not use, what it was given."""
        self._store(client).abandon(client.key, args)
        return True

    def adopt(self, client: Client, args: Any, req_id: int) -> Any:
        """zactor._arg_cache: the client holds this object from now on, if something else
        needs it too; its status and location."""
        objects = self.head.objects
        entry = objects.entries.get(args)
        if entry is None or entry.status is None:
            return None
        if entry.refs - (1 if args in client.holds else 0) <= 0:
            return None  # only this client's own ref keeps it: it is about to go
        if client.node is None and entry.loc is not None:
            return None  # it could only compare after fetching the object
        loc = self.head.transfers.loc_on(entry, client.node) if entry.loc is not None else None
        if entry.loc is not None and loc is None:
            return None  # stored on another node: not worth a pull to compare
        objects.add_ref(args, client.holds)
        return [entry.status, loc]

    def memory(self, client: Client, args: Any, req_id: int) -> Any:
        """zactor memory / zactor.util.state (args: None, or [filters, limit] for
        list_objects, applied here so that only the rows asked for travel)."""
        report = memory.report(self.head)
        if args:
            filters, limit = args
            report["objects"] = state.select(report["objects"], filters, limit)
        return report

    def store_stats(self, client: Client, args: Any, req_id: int) -> Any:
        return [n.agent.store.stats() for n in self.head.scheduler.nodes.values()]

    # -- zactor.testing ----------------------------------------------------------------------

    def stats(self, client: Client, args: Any, req_id: int) -> Any:
        head = self.head
        actors = head.actors.actors
        return {"dropped_messages": head.dropped, "tasks": len(head.tasks.tasks),
                "refused_connections": head.refusals.refused if head.refusals else 0,
                "refused_hellos": head.refused_hellos,
                "pulls": head.transfers.pulls_started,
                "nodes_alive": sum(1 for n in head.scheduler.nodes.values() if n.alive),
                "objects": len(head.objects.entries), "clients": len(head.clients),
                "workers": len(head.workers_by_pid), "queued": head.scheduler.queued,
                "actors": sum(1 for a in actors.values() if a.state != "dead"),
                "actor_records": len(actors),
                "functions": len(head.tasks.functions),
                "functions_received": head.functions_received,
                "direct_calls": head.direct_calls,
                "early_results": len(head.tasks.early),
                "lineage": len(head.tasks.lineage)}

    def worker_pids(self, client: Client, args: Any, req_id: int) -> Any:
        return sorted(pid for _node, pid in self.head.workers_by_pid)

    def objects_exist(self, client: Client, args: Any, req_id: int) -> Any:
        entries = self.head.objects.entries
        return [oid in entries for oid in args]

    def lose_object(self, client: Client, args: Any, req_id: int) -> Any:
        """Fault injection: drop an object's stored copy, as a dead node would."""
        entry = self.head.objects.entries.get(args)
        return bool(entry is not None and entry.loc is not None and
                    self.head.store_of(entry.node).lose(entry.loc))
