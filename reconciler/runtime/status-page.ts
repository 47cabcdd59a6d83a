// The status page: one self-contained HTML document (no framework, no external assets) that polls
// `/status.json` and draws the fabric as a graph (peers, exports, imports, flows allowed/denied),
// the revision and last error of each peer, and live counters. Served on localhost by default.
export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>clusterlink-gitops status</title>
<style>
  :root { --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --fg: #1f2328; --muted: #656d76; --line: #d0d7de; }
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); margin: 0; background: #f6f8fa; }
  header { background: #24292f; color: #fff; padding: 10px 20px; display: flex; gap: 24px; align-items: baseline; }
  header h1 { font-size: 16px; margin: 0; }
  header .rev { font-family: ui-monospace, monospace; font-size: 12px; color: #d0d7de; }
  main { display: grid; grid-template-columns: minmax(420px, 1fr) minmax(360px, 1fr); gap: 16px; padding: 16px 20px; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 12px 16px; }
  h2 { font-size: 14px; margin: 0 0 8px; }
  table { border-collapse: collapse; width: 100%; font-size: 13px; }
  td, th { text-align: left; padding: 3px 6px; border-bottom: 1px solid #eaeef2; vertical-align: top; }
  th { color: var(--muted); font-weight: 600; }
  .ok { color: var(--ok); } .bad { color: var(--bad); } .warn { color: var(--warn); }
  .mono { font-family: ui-monospace, monospace; font-size: 12px; }
  .error { background: #ffebe9; border: 1px solid #ff8182; border-radius: 6px; padding: 8px; margin-top: 8px; }
  svg text { font: 12px system-ui, sans-serif; }
  #graph { width: 100%; height: 420px; }
  .full { grid-column: 1 / -1; }
</style>
</head>
<body>
<header><h1>clusterlink-gitops</h1><span id="fabric"></span><span class="rev" id="revision">loading…</span><span id="updated" class="rev"></span></header>
<main>
  <section><h2>Fabric</h2><svg id="graph" role="img" aria-label="fabric graph"></svg>
    <div class="mono"><span class="ok">━━</span> allowed flow &nbsp; <span class="bad">╍╍</span> denied flow</div></section>
  <section><h2>Peers</h2><div id="peers"></div></section>
  <section class="full"><h2>Imports and exporters</h2><div id="imports"></div></section>
  <section class="full"><h2>Flows (egress on the importer, ingress on the exporter)</h2><div id="flows"></div></section>
</main>
<script>
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
const short = (r) => (r ? String(r).slice(0, 12) : '—');
function drawGraph(data) {
  const svg = $('graph');
  const W = svg.clientWidth || 600, H = 420, cx = W / 2, cy = H / 2, R = Math.min(W, H) / 2 - 70;
  const peers = data.fabric ? data.fabric.peers : [];
  const pos = {};
  peers.forEach((p, i) => { const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(1, peers.length); pos[p.name] = [cx + R * Math.cos(a), cy + R * Math.sin(a)]; });
  let out = '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#57606a"/></marker></defs>';
  const pairs = {};
  for (const f of data.flows || []) {
    const k = f.importer + '>' + f.exporter;
    pairs[k] = pairs[k] || { importer: f.importer, exporter: f.exporter, allowed: 0, denied: 0, imports: new Set() };
    pairs[k][f.allowed ? 'allowed' : 'denied']++;
    pairs[k].imports.add(f.import);
  }
  for (const k in pairs) {
    const e = pairs[k], a = pos[e.importer], b = pos[e.exporter];
    if (!a || !b) continue;
    const dx = b[0] - a[0], dy = b[1] - a[1], len = Math.hypot(dx, dy) || 1, nx = -dy / len * 10, ny = dx / len * 10;
    const x1 = a[0] + dx / len * 34 + nx, y1 = a[1] + dy / len * 34 + ny, x2 = b[0] - dx / len * 34 + nx, y2 = b[1] - dy / len * 34 + ny;
    const allowed = e.allowed > 0;
    out += '<line class="flow ' + (allowed ? 'allowed' : 'denied') + '" x1="' + x1 + '" y1="' + y1 + '" x2="' + x2 + '" y2="' + y2 + '" stroke="' + (allowed ? '#1a7f37' : '#cf222e') + '" stroke-width="2.5" ' + (allowed ? '' : 'stroke-dasharray="6 4" ') + 'marker-end="url(#arrow)"/>';
    out += '<text x="' + ((x1 + x2) / 2 + nx) + '" y="' + ((y1 + y2) / 2 + ny) + '" text-anchor="middle" fill="#57606a">' + esc([...e.imports].join(', ')) + ' (' + e.allowed + '✓ ' + e.denied + '✗)</text>';
  }
  for (const p of peers) {
    const [x, y] = pos[p.name];
    const st = (data.peers || []).find((s) => s.peer === p.name);
    const colour = !st ? '#8c959f' : st.ready && !st.lastApplyError && !(st.source && st.source.lastError) ? '#1a7f37' : st.ready ? '#9a6700' : '#cf222e';
    out += '<g class="peer" data-peer="' + esc(p.name) + '"><circle cx="' + x + '" cy="' + y + '" r="30" fill="#fff" stroke="' + colour + '" stroke-width="3"/>';
    out += '<text x="' + x + '" y="' + (y + 4) + '" text-anchor="middle" font-weight="600">' + esc(p.name) + '</text>';
    out += '<text x="' + x + '" y="' + (y + 46) + '" text-anchor="middle" fill="#57606a">' + esc(p.exports.map((e) => e.namespace + '/' + e.name).join(', ') || 'no exports') + '</text></g>';
  }
  svg.innerHTML = out;
}
function render(data) {
  $('fabric').textContent = data.fabric ? 'fabric ' + data.fabric.name : '';
  const revs = [...new Set((data.peers || []).map((p) => p.applied && p.applied.revision).filter(Boolean))];
  $('revision').textContent = 'revision ' + (revs.map(short).join(', ') || '—');
  $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  drawGraph(data);
  let h = '<table><tr><th>peer</th><th>ready</th><th>applied</th><th>attempted</th><th>tunnels</th><th>bytes</th></tr>';
  for (const p of data.peers || []) {
    const d = p.dataplane, eg = d ? Object.values(d.egress) : [];
    const active = eg.reduce((n, s) => n + s.active, 0) + (d ? d.ingress.active : 0);
    const bytes = eg.reduce((n, s) => n + s.bytesIn + s.bytesOut, 0) + (d ? d.ingress.bytesIn + d.ingress.bytesOut : 0);
    h += '<tr><td><b>' + esc(p.peer) + '</b></td><td class="' + (p.ready ? 'ok' : 'bad') + '">' + (p.ready ? 'ready' : 'not ready') + '</td><td class="mono">' + short(p.applied && p.applied.revision) + '</td><td class="mono">' + short(p.source && p.source.lastAttemptedRevision) + '</td><td>' + active + '</td><td>' + bytes.toLocaleString() + '</td></tr>';
    const err = (p.source && p.source.lastError) || p.lastApplyError;
    if (err) h += '<tr><td colspan="6"><div class="error"><b>last error</b> ' + (err.revision ? '(' + short(err.revision) + ') ' : '') + '<span class="mono">' + esc((err.file ? err.file + ':' + (err.line || 1) + ': ' : '') + err.message) + '</span></div></td></tr>';
  }
  $('peers').innerHTML = h + '</table>';
  let i = '<table><tr><th>peer</th><th>import</th><th>listens</th><th>exporters (lb)</th><th>connections</th><th>denied</th><th>failovers</th></tr>';
  for (const p of data.peers || []) {
    for (const imp of (p.slice && p.slice.imports) || []) {
      const s = p.dataplane && p.dataplane.egress[imp.ref];
      const addr = p.addresses && p.addresses.egress[imp.ref];
      i += '<tr><td>' + esc(p.peer) + '</td><td class="mono">' + esc(imp.ref) + '</td><td class="mono">' + (addr ? esc(addr.host + ':' + addr.port) : '—') + '</td><td>' + esc(imp.sources.map((x) => x.peer).join(', ')) + ' (' + esc(imp.lbScheme) + ')</td><td>' + (s ? s.connections : 0) + '</td><td>' + (s ? s.denied : 0) + '</td><td>' + (s ? s.failovers : 0) + '</td></tr>';
    }
  }
  $('imports').innerHTML = i + '</table>';
  let f = '<table><tr><th>importer</th><th>import</th><th>client</th><th>exporter</th><th>result</th><th>decided by</th></tr>';
  for (const x of data.flows || []) {
    const d = !x.egress.allowed ? x.egress : x.ingress;
    const by = d && d.explanation ? (d.explanation.policy ? d.explanation.tier + ' ' + d.explanation.policy + (d.explanation.location ? ' (' + d.explanation.location + ')' : '') : d.explanation.message) : '';
    f += '<tr class="flow-row"><td>' + esc(x.importer) + '</td><td class="mono">' + esc(x.import) + '</td><td class="mono">' + esc(x.client) + '</td><td>' + esc(x.exporter) + '</td><td class="' + (x.allowed ? 'ok' : 'bad') + '">' + (x.allowed ? 'allowed' : 'denied at ' + (x.egress.allowed ? 'ingress' : 'egress')) + '</td><td class="mono">' + esc(by) + '</td></tr>';
  }
  $('flows').innerHTML = f + '</table>';
}
async function tick() {
  try { const r = await fetch('status.json', { cache: 'no-store' }); if (r.ok) render(await r.json()); } catch (e) { $('updated').textContent = 'status endpoint unreachable'; }
}
tick(); setInterval(tick, 1000);
</script>
</body>
</html>
`;
