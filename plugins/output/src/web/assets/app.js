// rulogd's traffic view. Every value from the daemon is written with
// textContent (never innerHTML), so text that came with the traffic, such
// as a log prefix, is shown as text.
"use strict";

const CLASSES = ["inbound", "outbound", "internal", "external", "unknown"];
const COLORS = { inbound: "#2b7bb9", outbound: "#e07b00", internal: "#3a9a3a", external: "#8a5aa8", unknown: "#999" };
const PROTOS = { 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp" };
const token = new URLSearchParams(location.search).get("token");
let selected = null;

const $ = (id) => document.getElementById(id);
const num = (n) => Number(n).toLocaleString("en-US");

async function get(path, params) {
  const q = new URLSearchParams(params);
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const r = await fetch(path + "?" + q.toString(), { headers, cache: "no-store" });
  if (!r.ok && r.status !== 404) throw new Error(path + ": HTTP " + r.status);
  return r.status === 404 ? null : r.json();
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function hostCell(tr, host) {
  const td = document.createElement("td");
  const a = document.createElement("a");
  a.className = "host";
  a.href = "#host=" + encodeURIComponent(host);
  a.textContent = host;
  a.dataset.host = host;
  a.addEventListener("click", (e) => { e.preventDefault(); select(host); });
  td.appendChild(a);
  tr.appendChild(td);
}

function service(p, port) {
  const name = PROTOS[p] || ("proto " + p);
  return port ? name + "/" + port : name;
}

function fill(id, rows, make) {
  const body = $(id).tBodies[0];
  const trs = rows.map((r) => { const tr = document.createElement("tr"); make(tr, r); return tr; });
  body.replaceChildren(...trs);
}

function draw(svg, series, binSeconds) {
  const w = 800, h = Number(svg.viewBox.baseVal.height) || 200, pad = 4;
  const n = Math.max(...series.map((s) => s.values.length), 1);
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const ns = "http://www.w3.org/2000/svg";
  const kids = [];
  for (const s of series) {
    const pts = s.values.map((v, i) => {
      const x = n > 1 ? (i * (w - 2 * pad)) / (n - 1) + pad : w / 2;
      const y = h - pad - (v / max) * (h - 2 * pad);
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", s.color);
    line.setAttribute("stroke-width", "2");
    line.dataset.series = s.name;
    kids.push(line);
  }
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", "8");
  label.setAttribute("y", "16");
  label.setAttribute("font-size", "12");
  label.textContent = "max " + num(Math.round(max / binSeconds)) + "/s";
  kids.push(label);
  svg.replaceChildren(...kids);
}

function showSeries(s) {
  const metric = $("metric").value;
  const bs = s.bin_seconds;
  draw($("chart"), CLASSES.map((c) => ({ name: c, color: COLORS[c], values: s.classes[c][metric] })), bs);
  fill("totals", CLASSES, (tr, c) => {
    const k = s.classes[c];
    tr.dataset.class = c;
    cell(tr, c, "c-" + c);
    cell(tr, num(k.total_bytes)).dataset.value = k.total_bytes;
    cell(tr, num(k.total_packets)).dataset.value = k.total_packets;
    const last = k[metric].length ? k[metric][k[metric].length - 1] : 0;
    cell(tr, num(Math.round(last / bs)));
  });
  const legend = CLASSES.map((c) => {
    const span = document.createElement("span");
    const i = document.createElement("i");
    i.style.background = COLORS[c];
    span.append(i, c);
    return span;
  });
  $("legend").replaceChildren(...legend);
}

function showTop(t) {
  fill("top-sent", t.hosts_sent, (tr, r) => { hostCell(tr, r.host); cell(tr, num(r.sent)); cell(tr, num(r.received)); });
  fill("top-received", t.hosts_received, (tr, r) => { hostCell(tr, r.host); cell(tr, num(r.received)); cell(tr, num(r.sent)); });
  fill("top-services", t.services, (tr, r) => { cell(tr, service(r.protocol, r.port)); cell(tr, num(r.bytes)); cell(tr, num(r.packets)); });
  fill("top-conversations", t.conversations, (tr, r) => {
    hostCell(tr, r.source); hostCell(tr, r.destination); cell(tr, service(r.protocol, r.port)); cell(tr, num(r.bytes));
  });
  fill("top-prefixes", t.prefixes, (tr, r) => { cell(tr, r.prefix); cell(tr, num(r.packets)); cell(tr, num(r.bytes)); });
}

function showStats(st) {
  fill("stats", st.sets, (tr, s) => {
    cell(tr, s.name);
    cell(tr, Object.entries(s.counters).map(([k, v]) => k + "=" + v).join(" "));
  });
}

function showHost(h) {
  const panel = $("host-panel");
  if (!h) { panel.hidden = true; return; }
  panel.hidden = false;
  $("host-name").textContent = h.host;
  $("host-sent").textContent = num(h.total_sent);
  $("host-received").textContent = num(h.total_received);
  $("host-packets").textContent = num(h.total_packets);
  draw($("host-chart"), [
    { name: "sent", color: COLORS.outbound, values: h.sent },
    { name: "received", color: COLORS.inbound, values: h.received },
  ], h.bin_seconds);
  fill("host-peers", h.peers, (tr, r) => { hostCell(tr, r.host); cell(tr, num(r.bytes)); });
  fill("host-services", h.services, (tr, r) => { cell(tr, service(r.protocol, r.port)); cell(tr, num(r.bytes)); });
}

function select(host) {
  selected = host;
  history.replaceState(null, "", "#host=" + encodeURIComponent(host));
  refresh();
}

let busy = false;
async function refresh() {
  if (busy) return;
  busy = true;
  const win = $("window").value;
  try {
    const [s, t, st] = await Promise.all([
      get("/api/series", { window: win }), get("/api/top", { window: win }), get("/api/stats", {}),
    ]);
    showSeries(s);
    showTop(t);
    showStats(st);
    showHost(selected ? await get("/api/host", { ip: selected, window: win }) : null);
    $("status").textContent = num(s.records) + " flow records";
    document.body.dataset.ready = "1";
  } catch (e) {
    $("status").textContent = String(e);
  } finally {
    busy = false;
  }
}

$("window").addEventListener("change", refresh);
$("metric").addEventListener("change", refresh);
$("host-close").addEventListener("click", () => { selected = null; history.replaceState(null, "", "#"); refresh(); });
const m = location.hash.match(/^#host=(.+)$/);
if (m) selected = decodeURIComponent(m[1]);
refresh();
setInterval(refresh, 2000);
