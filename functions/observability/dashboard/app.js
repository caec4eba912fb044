/* Flux dashboard: traces list, logs, suggestions and the hash router (lib.js, trace.js, schema.js load first). */
"use strict";

/* ---------- traces list ---------- */

const SINCE_CHOICES = [["", "Any time"], ["15m", "Last 15 min"], ["1h", "Last hour"], ["24h", "Last 24 h"], ["7d", "Last 7 days"]];

async function tracesPage(params) {
  const state = { function: params.get("function") || "", status: params.get("status") || "", since: params.get("since") || "" };
  const fnInput = h("input", { type: "text", id: "f-function", list: "fn-list", placeholder: "any function", value: state.function });
  const fnList = h("datalist", { id: "fn-list" });
  const statusSel = h("select", { id: "f-status" },
    [["", "Any status"], ["ok", "OK"], ["error", "Errors"]].map(([v, t]) => h("option", { value: v, selected: v === state.status }, t)));
  const sinceSel = h("select", { id: "f-since" },
    SINCE_CHOICES.map(([v, t]) => h("option", { value: v, selected: v === state.since }, t)));
  const auto = h("input", { type: "checkbox", id: "f-auto", checked: true });
  const meta = h("span", { class: "meta" });
  const body = h("tbody", {});
  const table = h("table", { class: "list", id: "traces" },
    h("thead", {}, h("tr", {}, ["Time", "Request", "Status", "Duration", "Function", "Request id"].map((t) => h("th", {}, t)))), body);
  const panel = h("div", { class: "panel" },
    h("div", { class: "filters" },
      h("label", {}, "Function", fnInput, fnList), h("label", {}, "Status", statusSel), h("label", {}, "Time", sinceSel),
      h("label", { class: "toggle" }, auto, "Auto-refresh"), h("span", { class: "spacer" }), meta),
    table);
  view.replaceChildren(h("div", { class: "page-head" }, h("h1", {}, "Requests"), h("span", { class: "sub" }, "every request, newest first")), panel);

  const functions = new Set();
  const token = routeToken;
  async function load() {
    state.function = fnInput.value.trim();
    state.status = statusSel.value;
    state.since = sinceSel.value;
    setHashParams("traces", state);
    let data;
    try {
      data = await api("/traces", { ...state, limit: 200 });
    } catch (err) {
      if (token === routeToken) showError(err);
      return;
    }
    if (token !== routeToken) return;
    const longest = Math.max(1, ...data.traces.map((t) => t.duration_ms));
    body.replaceChildren(...data.traces.map((t) => {
      if (t.function) functions.add(t.function);
      return h("tr", { class: "clickable", "data-trace-id": t.trace_id, onclick: () => { location.hash = "#/trace/" + t.trace_id; } },
        h("td", { title: new Date(t.start_us / 1000).toISOString() }, clock(t.start_us), " ", h("span", { class: "meta" }, ago(t.start_us))),
        h("td", {}, h("span", { class: "method" }, t.method || t.kind), h("span", { class: "route" }, t.route || t.name)),
        h("td", {}, statusBadge(t.status, t.http_status)),
        h("td", { class: "num" }, ms(t.duration_ms), h("span", { class: "durbar", style: `width:${Math.max(2, 60 * t.duration_ms / longest)}px` })),
        h("td", {}, t.function),
        h("td", { class: "mono" }, h("a", { href: "#/trace/" + t.trace_id, onclick: (e) => e.stopPropagation() }, t.trace_id)));
    }));
    if (!data.traces.length) body.replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "empty" }, "No requests match. Send one to your API and it shows up here.")));
    fnList.replaceChildren(...[...functions].sort().map((f) => h("option", { value: f })));
    meta.textContent = `${data.count} request${data.count === 1 ? "" : "s"} · updated ${new Date().toLocaleTimeString([], { hour12: false })}`;
  }
  let debounce = null;
  fnInput.addEventListener("input", () => { clearTimeout(debounce); debounce = setTimeout(load, 250); });
  statusSel.addEventListener("change", load);
  sinceSel.addEventListener("change", load);
  await load();
  timer = setInterval(() => { if (auto.checked && !document.hidden) load(); }, 3000);
}
/* ---------- logs ---------- */

async function logsPage(params) {
  const state = { function: params.get("function") || "", level: params.get("level") || "", since: params.get("since") || "", request_id: params.get("request_id") || "" };
  const fnInput = h("input", { type: "text", id: "l-function", placeholder: "any function", value: state.function });
  const levelSel = h("select", { id: "l-level" }, [["", "All levels"], ["debug", "debug+"], ["info", "info+"], ["warn", "warn+"], ["error", "error"]]
    .map(([v, t]) => h("option", { value: v, selected: v === state.level }, t)));
  const sinceSel = h("select", { id: "l-since" }, SINCE_CHOICES.map(([v, t]) => h("option", { value: v, selected: v === state.since }, t)));
  const ridInput = h("input", { type: "text", id: "l-request", placeholder: "request id", value: state.request_id, style: "min-width:280px" });
  const follow = h("input", { type: "checkbox", id: "l-follow" });
  const live = h("span", { class: "live", hidden: true }, "following");
  const slot = h("div", {});
  view.replaceChildren(h("div", { class: "page-head" }, h("h1", {}, "Logs"), h("span", { class: "sub" }, "ctx.log and console output of every function")),
    h("div", { class: "panel" }, h("div", { class: "filters" },
      h("label", {}, "Function", fnInput), h("label", {}, "Level", levelSel), h("label", {}, "Time", sinceSel), h("label", {}, "Request", ridInput),
      h("label", { class: "toggle" }, follow, "Follow"), live), slot));
  const token = routeToken;
  async function load() {
    Object.assign(state, { function: fnInput.value.trim(), level: levelSel.value, since: sinceSel.value, request_id: ridInput.value.trim() });
    setHashParams("logs", state);
    try {
      const data = await api("/logs", { ...state, limit: 500 });
      if (token !== routeToken) return;
      const atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
      slot.replaceChildren(logTable(data.logs, true));
      if (follow.checked && atBottom) window.scrollTo(0, document.body.scrollHeight);
    } catch (err) {
      if (token !== routeToken) return;
      slot.replaceChildren(h("div", { class: "panel-body" }, h("div", { class: "error-box" }, err.message)));
    }
  }
  let debounce = null;
  for (const input of [fnInput, ridInput]) input.addEventListener("input", () => { clearTimeout(debounce); debounce = setTimeout(load, 300); });
  levelSel.addEventListener("change", load);
  sinceSel.addEventListener("change", load);
  follow.addEventListener("change", () => { live.hidden = !follow.checked; if (follow.checked) load(); });
  await load();
  timer = setInterval(() => { if (follow.checked && !document.hidden) load(); }, 1500);
}
/* ---------- suggestions ---------- */

async function suggestionsPage() {
  view.replaceChildren(h("div", { class: "empty" }, "Looking at recent requests…"));
  let data;
  try {
    data = await api("/suggestions", { limit: 100 });
  } catch (err) {
    return showError(err);
  }
  view.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Suggestions"), h("span", { class: "sub" }, `from the last ${data.traces_scanned} requests`)),
    findingsPanels(data.n1_warnings, data.slow_queries, data.suggested_indexes, data.advice_error));
}
/* ---------- router ---------- */

async function route() {
  routeToken += 1;
  if (timer) { clearInterval(timer); timer = null; }
  const { parts, params } = parseHash();
  const page = parts[0];
  for (const tab of document.querySelectorAll(".tabs a")) tab.classList.toggle("active", tab.dataset.tab === (page === "trace" ? "traces" : page));
  try {
    if (page === "trace" && parts[1]) await tracePage(parts[1]);
    else if (page === "logs") await logsPage(params);
    else if (page === "schema") await schemaPage();
    else if (page === "suggestions") await suggestionsPage();
    else await tracesPage(params);
  } catch (err) {
    showError(err);
  }
}

window.addEventListener("hashchange", route);
route();
