// The web admin's page script (a file, not inline: the admin's CSP allows only 'self').
const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
// Every write made with the session cookie carries the session's CSRF token (the server
// also checks that the request comes from this origin): see hub/api/csrf.py.
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const api = async (path, opts={}) => {
  const headers = {...(opts.headers || {})};
  if ((opts.method || "GET") !== "GET") headers["X-CSRF-Token"] = CSRF;
  const r = await fetch("/api" + path, {credentials: "same-origin", ...opts, headers});
  if (r.status === 401) { location.reload(); throw new Error("signed out"); }
  return r.json();
};
const table = (cols, rows) => `<table><tr>${cols.map(c => `<th>${c}</th>`).join("")}</tr>${
  rows.map(r => `<tr>${r.map(c => `<td>${c}</td>`).join("")}</tr>`).join("") ||
  `<tr><td colspan="${cols.length}" class="muted">nothing here</td></tr>`}</table>`;
const views = {
  async leads() {
    const d = await api("/leads?limit=100");
    return table(["received", "source", "name", "phones", "emails", "utm", "manager", "status", "deliveries", ""],
      d.items.map(l => [esc(l.received_at.slice(0, 19).replace("T", " ")), esc(l.source), esc(l.contact.name),
        esc(l.contact.phones.join(", ")), esc(l.contact.emails.join(", ")),
        esc([l.utm.source, l.utm.medium, l.utm.campaign].filter(Boolean).join(" / ")), esc(l.assigned_to),
        `<span class="s-${esc(l.status)}">${esc(l.status)}</span>`,
        l.deliveries.map(x => `${esc(x.destination)}: <span class="s-${esc(x.status)}">${esc(x.status)}</span>`).join("<br>"),
        `<button data-post="/leads/${esc(l.id)}/replay">replay</button>`]));
  },
  async deliveries() {
    const d = await api("/deliveries?limit=200");
    return table(["destination", "lead", "status", "attempts", "external id", "last error", ""],
      d.items.map(x => [esc(x.destination), esc(x.lead_id), `<span class="s-${esc(x.status)}">${esc(x.status)}</span>`,
        x.attempts, esc(x.external_id), `<pre>${esc(x.last_error)}</pre>`,
        x.status === "delivered" ? "" : `<button data-post="/deliveries/${esc(x.id)}/retry">retry</button>`]));
  },
  async quarantine() {
    const d = await api("/quarantine");
    return table(["when", "source", "reason", "request", ""], d.items.map(q => [esc(q.created_at), esc(q.source),
      esc(q.reason), `<pre>${esc(q.request.body)}</pre>`,
      `<button data-post="/quarantine/${esc(q.id)}/reprocess">reprocess</button>`]));
  },
  async connectors() {
    const d = await api("/connectors");
    return table(["name", "kind", "plugin", "enabled", ""], d.items.map(c => [esc(c.name), esc(c.kind), esc(c.plugin),
      c.enabled ? "yes" : "<b>no</b>",
      `<button data-post="/connectors/${esc(c.name)}/${c.enabled ? "disable" : "enable"}">${c.enabled ? "disable" : "enable"}</button>`]));
  },
  async ledger() {
    const d = await api("/ledger");
    const keys = Object.keys(d.totals);
    const rows = Object.entries(d.by_source).map(([n, c]) => [esc(n), ...keys.map(k => c[k])]);
    rows.push(["<b>total</b>", ...keys.map(k => `<b>${d.totals[k]}</b>`)]);
    return `<p>${d.balanced ? "Balanced: every accepted event is accounted for." : "<b>NOT balanced</b>"}</p>` +
      table(["source", ...keys], rows);
  },
};
async function show() {
  const name = (location.hash || "#leads").slice(1);
  document.querySelectorAll("header a").forEach(a => a.classList.toggle("on", a.hash === "#" + name));
  document.getElementById("view").innerHTML = await (views[name] || views.leads)();
}
document.addEventListener("click", async e => {
  const path = e.target.dataset && e.target.dataset.post;
  if (!path) return;
  e.target.disabled = true;
  await api(path, {method: "POST"});
  show();
});
addEventListener("hashchange", show);
show();
