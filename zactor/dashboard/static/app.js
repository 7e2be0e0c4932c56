// The zactor dashboard: one page, live from /api/events (server-sent events), drawn with
// Preact and htm (vendored: no build step, no network). Every view reads the same snapshot
// (zactor/dashboard/_data.py), so what the page shows is what `zactor list` answers.
import { html, render, useState, useEffect, useRef } from "./vendor/htm-preact-standalone.mjs";

const TABS = [
  ["overview", "Overview"], ["nodes", "Nodes"], ["actors", "Actors"], ["tasks", "Tasks"],
  ["objects", "Objects"], ["jobs", "Jobs"], ["placement-groups", "Placement groups"],
  ["supervision", "Supervision"],
];

// Task, actor and object ids are a per-process prefix then a counter (zactor/_ids.py), and
// an object id ends in its index among its task's returns: show both ends.
const short = (id) => {
  if (!id) return "-";
  if (id.length === 40) {
    const index = parseInt(id.slice(32), 16);
    return `${id.slice(0, 6)}…${id.slice(26, 32)}${index ? `:${index}` : ""}`;
  }
  return id.length > 14 ? `${id.slice(0, 6)}…${id.slice(-6)}` : id;
};
const Id = ({ id }) => html`<span class="mono" title=${id || ""}>${short(id)}</span>`;
const fmtBytes = (n) => {
  if (!n) return "0 B";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
};
const fmtNum = (x) => (Number.isInteger(x) ? String(x) : x.toFixed(2).replace(/\.?0+$/, ""));
const fmtTime = (ms) => (ms ? new Date(ms).toLocaleTimeString() : "-");
const fmtDuration = (start, end) => {
  if (!start) return "-";
  const s = ((end || Date.now()) - start) / 1000;
  return s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(s < 10 ? 2 : 1)} s`;
};

function Badge({ state }) {
  return html`<span class="badge ${state}">${state}</span>`;
}

function Bar({ used, total, kind, text }) {
  const pct = total > 0 ? Math.min(100, (100 * used) / total) : 0;
  return html`<span class="bar ${kind || ""}" title="${pct.toFixed(0)}%">
    <span style="width:${pct}%"></span></span><span class="bar-text">${text}</span>`;
}

function Table({ cols, rows, empty, onRow, selected, testid }) {
  if (!rows.length) return html`<div class="empty">${empty}</div>`;
  return html`<table data-testid=${testid}>
    <thead><tr>${cols.map((c) => html`<th class=${c.num ? "num" : ""}>${c.title}</th>`)}</tr></thead>
    <tbody>${rows.map((r) => html`<tr key=${r.key}
        class=${(onRow ? "clickable " : "") + (selected && selected === r.key ? "selected" : "")}
        onClick=${onRow ? () => onRow(r) : undefined} data-key=${r.key}>
      ${cols.map((c) => html`<td class=${(c.num ? "num " : "") + (c.cls || "")}>${c.cell(r)}</td>`)}
    </tr>`)}</tbody></table>`;
}

function Section({ title, note, children }) {
  return html`<section><h2>${title}${note ? html`<span class="note">${note}</span>` : ""}</h2>
    ${children}</section>`;
}

function Card({ label, value, sub, testid }) {
  return html`<div class="card" data-testid=${testid}><div class="label">${label}</div>
    <div class="value">${value}</div>${sub ? html`<div class="sub">${sub}</div>` : ""}</div>`;
}

function resourceCell(node, key) {
  const total = (node.resources_total || {})[key] || 0;
  if (!total) return "-";
  const free = (node.resources_available || {})[key] ?? total;
  const used = total - free;
  if (key === "memory") return html`<${Bar} used=${used} total=${total} text=${`${fmtBytes(used)} / ${fmtBytes(total)}`} />`;
  return html`<${Bar} used=${used} total=${total} text=${`${fmtNum(used)} / ${fmtNum(total)}`} />`;
}

function NodesTable({ nodes }) {
  const rows = nodes.map((n) => ({ ...n, key: n.node_id }));
  return html`<${Table} testid="nodes-table" rows=${rows} empty="No nodes." cols=${[
    { title: "Node", cell: (n) => html`<${Id} id=${n.node_id} />` },
    { title: "IP", cell: (n) => n.node_ip },
    { title: "Host", cell: (n) => n.hostname },
    { title: "Role", cell: (n) => (n.is_head_node ? "head" : "worker") },
    { title: "State", cell: (n) => html`<${Badge} state=${n.state} />` },
    { title: "CPU", cell: (n) => resourceCell(n, "CPU") },
    { title: "GPU", cell: (n) => resourceCell(n, "GPU") },
    { title: "Load (1 min)", num: true, cell: (n) => n.state === "ALIVE" ? html`<span
        title="runnable processes, averaged over a minute">${n.load_1m.toFixed(2)} / ${fmtNum(
        (n.resources_total || {}).CPU || 0)} CPUs</span>` : "-" },
    { title: "Memory in use", cell: (n) => n.memory_total ? html`<${Bar} kind="mem"
        used=${n.memory_total - n.memory_available} total=${n.memory_total}
        text=${`${fmtBytes(n.memory_total - n.memory_available)} / ${fmtBytes(n.memory_total)}`} />` : "-" },
    { title: "Object store", cell: (n) => html`<${Bar} kind="store" used=${n.store_used}
        total=${n.store_capacity} text=${`${fmtBytes(n.store_used)} / ${fmtBytes(n.store_capacity)}`} />` },
    { title: "Workers", num: true, cell: (n) => n.workers },
  ]} />`;
}

function Overview({ snap }) {
  const c = snap.cluster;
  const alive = snap.nodes.filter((n) => n.state === "ALIVE");
  const sum = (key, field) => alive.reduce((a, n) => a + ((n[field] || {})[key] || 0), 0);
  const cpuTotal = sum("CPU", "resources_total");
  const cpuUsed = cpuTotal - sum("CPU", "resources_available");
  const storeUsed = alive.reduce((a, n) => a + (n.store_used || 0), 0);
  const storeCap = alive.reduce((a, n) => a + (n.store_capacity || 0), 0);
  const ts = c.tasks_by_state;
  return html`<div>
    <div class="cards">
      <${Card} testid="card-nodes" label="Nodes" value=${alive.length}
        sub=${`${snap.nodes.length - alive.length} dead`} />
      <${Card} label="CPUs in use" value=${`${fmtNum(cpuUsed)} / ${fmtNum(cpuTotal)}`}
        sub=${`${c.tasks_queued} queued, ${c.tasks_waiting_for_args} waiting for arguments`} />
      <${Card} testid="card-actors" label="Actors alive" value=${c.actors_by_state.alive || 0}
        sub=${Object.entries(c.actors_by_state).map(([k, v]) => `${v} ${k}`).join(", ") || "none"} />
      <${Card} testid="card-tasks" label="Tasks" value=${c.total_tasks}
        sub=${`${ts.RUNNING || 0} running, ${ts.FINISHED || 0} finished, ${ts.FAILED || 0} failed`} />
      <${Card} label="Object store" value=${fmtBytes(storeUsed)} sub=${`of ${fmtBytes(storeCap)}`} />
      <${Card} label="Drivers" value=${c.drivers}
        sub=${`${c.dropped_messages} dropped messages`} />
    </div>
    <${Section} title="Nodes"><${NodesTable} nodes=${snap.nodes} /><//>
    <${Section} title="Recent tasks" note="the newest first; all of them under Tasks">
      <${TasksTable} tasks=${snap.tasks.slice(0, 8)} testid="recent-tasks" /><//>
    ${Object.keys(c.demand).length + Object.keys(c.infeasible).length ? html`
      <${Section} title="Unmet resource demand"><${Table} testid="demand" rows=${[
        ...Object.entries(c.demand).map(([k, v]) => ({ key: k, shape: k, n: v, note: "" })),
        ...Object.entries(c.infeasible).map(([k, v]) => ({ key: "x" + k, shape: k, n: v,
          note: "no node can ever run it" }))]}
        cols=${[{ title: "Resources", cell: (r) => r.shape }, { title: "Waiting", num: true, cell: (r) => r.n },
                { title: "", cell: (r) => html`<span class="error-text">${r.note}</span>` }]} /><//>` : ""}
    <${SupervisionView} snap=${snap} hideEmpty=${true} />
  </div>`;
}

function ActorsView({ snap }) {
  const rows = snap.actors.map((a) => ({ ...a, key: a.actor_id }));
  return html`<${Section} title="Actors" note=${`${snap.actors_total} in all`}>
    <${Table} testid="actors-table" rows=${rows} empty="No actors." cols=${[
      { title: "Actor", cell: (a) => html`<${Id} id=${a.actor_id} />` },
      { title: "Class", cell: (a) => a.class_name },
      { title: "Name", cell: (a) => a.name || "-" },
      { title: "State", cell: (a) => html`<${Badge} state=${a.state} />` },
      { title: "PID", num: true, cell: (a) => a.pid ?? "-" },
      { title: "Node", cell: (a) => html`<${Id} id=${a.node_id} />` },
      { title: "Restarts", num: true, cell: (a) => a.num_restarts },
      { title: "Death cause", cls: "wrap", cell: (a) => a.death_cause ? html`<span class="error-text">
          ${a.death_cause.actor_died_error_context.error_message}</span>` : "" },
    ]} /><//>`;
}

function TasksView({ snap }) {
  const note = `newest ${snap.tasks.length} of ${snap.tasks_total}` +
    (snap.tasks_forgotten ? `; ${snap.tasks_forgotten} older ones forgotten` : "");
  return html`<${Section} title="Tasks" note=${note}>
    <${TasksTable} tasks=${snap.tasks} testid="tasks-table" /><//>`;
}

function TasksTable({ tasks, testid }) {
  const rows = tasks.map((t) => ({ ...t, key: `${t.task_id}-${t.attempt_number}` }));
  return html`<${Table} testid=${testid} rows=${rows} empty="No tasks yet." cols=${[
      { title: "Task", cell: (t) => html`<${Id} id=${t.task_id} />` },
      { title: "Name", cell: (t) => t.name },
      { title: "Type", cell: (t) => t.type },
      { title: "State", cell: (t) => html`<${Badge} state=${t.state} />` },
      { title: "Node", cell: (t) => html`<${Id} id=${t.node_id} />` },
      { title: "PID", num: true, cell: (t) => t.worker_pid ?? "-" },
      { title: "Started", cell: (t) => fmtTime(t.start_time_ms) },
      { title: "Duration", num: true, cell: (t) => fmtDuration(t.start_time_ms, t.end_time_ms) },
      { title: "Error", cls: "wrap", cell: (t) => t.error_type ? html`<span class="error-text"
          title=${t.error_message}>${t.error_type}: ${(t.error_message || "").split("\n").slice(-2).join(" ")}</span>` : "" },
    ]} />`;
}

function ObjectsView({ snap }) {
  const nodes = snap.object_nodes.map((n) => ({ ...n, key: n.node }));
  const objects = snap.objects.map((o) => ({ ...o, key: o.object_id }));
  return html`<div>
    <${Section} title="Memory per node">
      <${Table} testid="object-nodes" rows=${nodes} empty="No nodes." cols=${[
        { title: "Node", cell: (n) => html`<${Id} id=${n.node} />` },
        { title: "Objects", num: true, cell: (n) => n.objects },
        { title: "Store", cell: (n) => html`<${Bar} kind="store" used=${n.store_used}
            total=${n.store_capacity} text=${`${fmtBytes(n.store_used)} / ${fmtBytes(n.store_capacity)}`} />` },
        { title: "By place", cell: (n) => Object.entries(n.by_where)
            .map(([w, [c, b]]) => `${w}: ${c} (${fmtBytes(b)})`).join(", ") || "-" },
      ]} /><//>
    <${Section} title="Objects" note="largest first">
      <${Table} testid="objects-table" rows=${objects} empty="No objects." cols=${[
        { title: "Object", cell: (o) => html`<${Id} id=${o.object_id} />` },
        { title: "Size", num: true, cell: (o) => fmtBytes(o.size) },
        { title: "Where", cell: (o) => o.where },
        { title: "Status", cell: (o) => html`<${Badge} state=${o.status} />` },
        { title: "Owner", cell: (o) => o.owner },
        { title: "Node", cell: (o) => html`<${Id} id=${o.node} />` },
        { title: "References", cls: "wrap", cell: (o) => o.references.join(", ") },
      ]} /><//>
  </div>`;
}

function JobLogs({ jobId }) {
  const [text, setText] = useState("");
  const [ended, setEnded] = useState(false);
  const pre = useRef(null);
  useEffect(() => {
    let offset = 0, stop = false, timer = null;
    setText(""); setEnded(false);
    const poll = async () => {
      try {
        const r = await fetch(`/api/jobs/${encodeURIComponent(jobId)}/logs?offset=${offset}`);
        const body = await r.json();
        if (stop) return;
        if (!r.ok) { setText(body.error || r.statusText); setEnded(true); return; }
        if (body.text) setText((t) => t + body.text);
        offset = body.offset;
        if (body.ended && !body.text) { setEnded(true); return; }
      } catch (e) { /* the next poll retries */ }
      if (!stop) timer = setTimeout(poll, 1000);
    };
    poll();
    return () => { stop = true; clearTimeout(timer); };
  }, [jobId]);
  useEffect(() => { if (pre.current) pre.current.scrollTop = pre.current.scrollHeight; }, [text]);
  return html`<${Section} title=${`Logs of ${jobId}`} note=${ended ? "the job has ended" : "following"}>
    <pre class="logs" data-testid="job-logs" ref=${pre}>${text || "(no output yet)"}</pre><//>`;
}

function JobsView({ snap }) {
  const [selected, setSelected] = useState(null);
  const rows = snap.jobs.map((j) => ({ ...j, key: j.submission_id || `driver-${j.driver_pid}` }));
  return html`<div>
    <${Section} title="Jobs" note="click a submitted job for its logs">
      <${Table} testid="jobs-table" rows=${rows} empty="No jobs." selected=${selected}
        onRow=${(j) => j.submission_id && setSelected(j.submission_id)} cols=${[
          { title: "Job", cell: (j) => html`<span class="mono">${j.submission_id || "-"}</span>` },
          { title: "Type", cell: (j) => j.type },
          { title: "Status", cell: (j) => html`<${Badge} state=${j.status} />` },
          { title: "Entrypoint", cls: "wrap mono", cell: (j) => j.entrypoint || "-" },
          { title: "Driver PID", num: true, cell: (j) => j.driver_pid ?? "-" },
          { title: "Started", cell: (j) => fmtTime(j.start_time) },
          { title: "Message", cls: "wrap", cell: (j) => j.message || "" },
        ]} /><//>
    ${selected ? html`<${JobLogs} jobId=${selected} />` : ""}
  </div>`;
}

function GroupsView({ snap }) {
  const rows = snap.placement_groups.map((g) => ({ ...g, key: g.placement_group_id }));
  return html`<${Section} title="Placement groups">
    <${Table} testid="pg-table" rows=${rows} empty="No placement groups." cols=${[
      { title: "Group", cell: (g) => html`<${Id} id=${g.placement_group_id} />` },
      { title: "Name", cell: (g) => g.name || "-" },
      { title: "Strategy", cell: (g) => g.strategy },
      { title: "State", cell: (g) => html`<${Badge} state=${g.state} />` },
      { title: "Bundles", cls: "wrap", cell: (g) => g.bundles.map((b) =>
          `${Object.entries(b.unit_resources || {}).map(([k, v]) => `${k}: ${fmtNum(v)}`).join(", ")}` +
          ` on ${short(b.node_id)}`).join("; ") },
    ]} /><//>`;
}

function TreeNode({ actor, children }) {
  const kids = children.get(actor.actor_id) || [];
  return html`<li data-testid="tree-node" data-actor=${actor.actor_id}>
    <span class="node-label"><${Badge} state=${actor.state} />
      <b title=${actor.actor_id}>${actor.name || short(actor.actor_id)}</b>
      <span class="kind">${actor.class_name}${actor.num_restarts ? ` · ${actor.num_restarts} restarts` : ""}</span>
    </span>
    ${kids.length ? html`<ul>${kids.map((k) => html`<${TreeNode} key=${k.actor_id} actor=${k} children=${children} />`)}</ul>` : ""}
  </li>`;
}

function SupervisionView({ snap, hideEmpty }) {
  const byId = new Map(snap.actors.map((a) => [a.actor_id, a]));
  const children = new Map();
  for (const a of snap.actors) {
    if (a.supervisor_id && byId.has(a.supervisor_id)) {
      if (!children.has(a.supervisor_id)) children.set(a.supervisor_id, []);
      children.get(a.supervisor_id).push(a);
    }
  }
  const roots = snap.actors.filter((a) => children.has(a.actor_id) &&
    !(a.supervisor_id && byId.has(a.supervisor_id)));
  const plain = snap.actors.filter((a) => !children.has(a.actor_id) && !a.supervisor_id).length;
  if (hideEmpty && !roots.length) return "";
  return html`<${Section} title="Supervision trees"
      note=${`${roots.length} tree(s); ${plain} actor(s) under the root supervisor alone`}>
    ${roots.length ? html`<ul class="tree" data-testid="supervision-trees">${roots.map((r) =>
      html`<${TreeNode} key=${r.actor_id} actor=${r} children=${children} />`)}</ul>`
      : html`<div class="empty">No supervision trees (zactor.supervision.start builds one).</div>`}
  <//>`;
}

const VIEWS = {
  overview: Overview, nodes: ({ snap }) => html`<${Section} title="Nodes"><${NodesTable} nodes=${snap.nodes} /><//>`,
  actors: ActorsView, tasks: TasksView, objects: ObjectsView, jobs: JobsView,
  "placement-groups": GroupsView, supervision: SupervisionView,
};

function useHashTab() {
  const read = () => (location.hash.replace(/^#\/?/, "") || "overview");
  const [tab, setTab] = useState(read());
  useEffect(() => {
    const on = () => setTab(read());
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return VIEWS[tab] ? tab : "overview";
}

function App() {
  const [snap, setSnap] = useState(null);
  const [live, setLive] = useState(false);
  const tab = useHashTab();
  useEffect(() => {
    const source = new EventSource("/api/events");
    source.addEventListener("snapshot", (e) => { setSnap(JSON.parse(e.data)); setLive(true); });
    source.onerror = () => setLive(false); // EventSource reconnects by itself
    return () => source.close();
  }, []);
  if (!snap) return html`<p class="loading">Connecting to the cluster…</p>`;
  const counts = { nodes: snap.nodes.length, actors: snap.actors_total, tasks: snap.tasks_total,
    objects: snap.objects.length, jobs: snap.jobs.length, "placement-groups": snap.placement_groups.length };
  const View = VIEWS[tab];
  return html`
    <header><h1>zactor</h1>
      <span class="where">${snap.cluster.address}${snap.cluster.insecure ? " · INSECURE" :
        snap.cluster.encrypted ? " · encrypted" : " · local"}</span>
      <span class=${"live " + (live ? "on" : "off")} data-testid="live">
        ${live ? `live · ${new Date(snap.time * 1000).toLocaleTimeString()}` : "reconnecting…"}</span>
    </header>
    <nav>${TABS.map(([id, title]) => html`<a href=${"#/" + id} class=${tab === id ? "active" : ""}
        data-testid=${"tab-" + id}>${title}${counts[id] !== undefined ?
        html`<span class="count">${counts[id]}</span>` : ""}</a>`)}</nav>
    <main data-testid=${"view-" + tab}><${View} snap=${snap} /></main>`;
}

render(html`<${App} />`, document.getElementById("app"));
