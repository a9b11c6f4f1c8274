// The admin page: every two seconds, /status and each server's views (GET
// /SERVER/VIEW), drawn with textContent only: a DHCP host name or an SMTP sender is
// text chosen by strangers, never markup. No inline script: the CSP forbids it.
"use strict";

const REFRESH_MS = 2000;
let views = null; // {server: [view names]} that answer GET

function el(tag, text) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function table(rows) {
  const t = el("table");
  const columns = [];
  for (const row of rows) for (const k of Object.keys(row)) if (!columns.includes(k)) columns.push(k);
  const head = t.insertRow();
  for (const c of columns) head.appendChild(el("th", c));
  for (const row of rows) {
    const tr = t.insertRow();
    for (const c of columns) {
      const v = row[c];
      tr.appendChild(el("td", v === null || v === undefined ? "" :
        (typeof v === "object" ? JSON.stringify(v) : v)));
    }
  }
  return t;
}

function counters(status) {
  const t = el("table");
  t.className = "counters";
  for (const [k, v] of Object.entries(status)) {
    if (typeof v === "object") continue;
    const tr = t.insertRow();
    tr.appendChild(el("td", k));
    tr.appendChild(el("td", v));
  }
  return t;
}

async function getJSON(path, options) {
  const response = await fetch(path, Object.assign({ cache: "no-store" }, options || {}));
  if (!response.ok) throw new Error(path + ": " + response.status);
  return response.json();
}

async function discover() {
  return getJSON("/views"); // {server: [read-only views]}: actions are never fetched
}

async function refresh() {
  const main = document.getElementById("servers");
  try {
    if (views === null) views = await discover();
    const status = await getJSON("/status");
    document.getElementById("process").textContent =
      "pid " + status.pid + ", up " + Math.round(status.uptime) + " s" +
      (status.config_file ? ", " + status.config_file : "");
    const sections = [];
    for (const [name, s] of Object.entries(status.servers)) {
      const section = el("section");
      section.appendChild(el("h2", name + "  " + (s.listen || []).join(" ")));
      section.appendChild(counters(s));
      for (const view of views[name] || []) {
        let rows;
        try {
          rows = await getJSON("/" + encodeURIComponent(name) + "/" + encodeURIComponent(view));
        } catch (e) {
          continue; // a view that failed this time: the next refresh tries again
        }
        section.appendChild(el("h3", view));
        if (Array.isArray(rows) && rows.length && typeof rows[0] === "object") {
          section.appendChild(table(rows));
        } else {
          section.appendChild(el("pre", JSON.stringify(rows, null, 2)));
        }
      }
      sections.push(section);
    }
    main.replaceChildren(...sections);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    const p = el("p", "cannot read the admin endpoint: " + e.message);
    p.className = "error";
    main.replaceChildren(p);
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
