/* Flux dashboard, trace page: header, waterfall, findings (N+1, slow queries, index DDL) and logs. */
"use strict";

/* ---------- trace page ---------- */

const KINDS = ["gateway", "function", "db", "queue", "http", "custom"];

function spanDetail(span) {
  const rows = [["span", span.span_id], ["parent", span.parent_span_id || "—"], ["kind", span.kind], ["status", span.status],
    ["start", "+" + ms(span.offset_us / 1000)], ["duration", ms(span.duration_us / 1000)]];
  for (const [k, v] of Object.entries(span.attrs || {})) rows.push([k, typeof v === "string" ? v : JSON.stringify(v)]);
  return h("div", { class: "panel", id: "span-detail" },
    h("div", { class: "panel-body" }, h("h2", {}, span.name), h("dl", { class: "detail" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))));
}

function niceStep(total) {
  const raw = total / 6;
  const pow = Math.pow(10, Math.floor(Math.log10(raw || 1)));
  return [1, 2, 2.5, 5, 10].map((m) => m * pow).find((step) => step >= raw) || raw;
}

function waterfall(trace, onSelect) {
  const total = Math.max(trace.duration_ms, 0.001);
  const step = niceStep(total);
  const ticks = [];
  for (let t = 0; t <= total + 1e-9; t += step) ticks.push(t);
  const pct = (valueMs) => (100 * valueMs / total).toFixed(4) + "%";
  const rows = [];
  const stack = [[trace.root, []]];
  while (stack.length) {
    const [node, guides] = stack.pop();
    const startMs = node.offset_us / 1000;
    const durMs = node.duration_us / 1000;
    const flags = [];
    if (node.n_plus_one) flags.push(h("span", { class: "tag n1", title: "part of an N+1 group" }, "N+1"));
    if (node.slow) flags.push(h("span", { class: "tag slow", title: "slower than slow_query_ms" }, "SLOW"));
    if (node.name.startsWith("async →")) flags.push(h("span", { class: "tag async" }, "ASYNC"));
    if (node.orphan) flags.push(h("span", { class: "tag orphan", title: "parent span not recorded (yet)" }, "orphan"));
    const barClass = ["wf-bar", "k-" + (KINDS.includes(node.kind) ? node.kind : "custom"),
      node.status === "error" ? "err" : "", node.n_plus_one ? "n1" : "", node.slow ? "slow" : "", node.async ? "async" : ""].join(" ");
    // Duration label: inside a wide bar, else after the bar, else (bar at the right edge) before it.
    const endPct = 100 * (startMs + durMs) / total;
    const widthPct = 100 * durMs / total;
    let labelStyle = `left:calc(${pct(startMs + durMs)} + 6px)`;
    let labelClass = "wf-dur";
    if (widthPct > 22 && !node.async && !node.n_plus_one) {
      labelStyle = `right:calc(${(100 - endPct).toFixed(4)}% + 6px)`;
      labelClass = "wf-dur inside";
    } else if (endPct > 82) {
      labelStyle = `right:calc(${(100 - 100 * startMs / total).toFixed(4)}% + 6px)`;
    }
    const durLabel = h("span", { class: labelClass, style: labelStyle }, ms(durMs));
    const row = h("div", {
      class: "wf-row" + (node.n_plus_one ? " flag-n1" : node.slow ? " flag-slow" : ""), "data-span-id": node.span_id, "data-kind": node.kind,
      role: "button", tabindex: "0", onclick: () => onSelect(node, row),
    },
      h("div", { class: "wf-label", style: `padding-left:${12 + node.depth * 16}px` },
        h("span", { class: "kind kind-" + (KINDS.includes(node.kind) ? node.kind : "custom") }, node.kind),
        h("span", { class: "name" + (node.status === "error" ? " err" : ""), title: node.name }, node.name), flags),
      h("div", { class: "wf-track" },
        ticks.map((t) => h("span", { class: "grid-line", style: `left:${pct(t)}` })),
        h("span", { class: barClass, style: `left:${pct(startMs)};width:${pct(Math.max(durMs, total / 400))}`, title: `${node.name} · ${ms(durMs)}` }),
        durLabel));
    rows.push(row);
    for (let i = node.children.length - 1; i >= 0; i--) stack.push([node.children[i], guides]);
  }
  return h("div", { class: "panel waterfall", id: "waterfall" },
    h("div", { class: "wf-axis" }, h("div", { class: "label-head" }, "Span"),
      h("div", { class: "ticks" }, ticks.map((t) => h("span", { class: "tick", style: `left:${pct(t)}` }, t / total < 0.93 ? ms(t) : "")))),
    rows,
    h("div", { class: "legend" }, KINDS.map((k) => h("span", {}, h("i", { style: `background:var(--k-${k})` }), k)),
      h("span", {}, h("i", { style: "background:var(--err)" }), "error"),
      h("span", {}, h("span", { class: "tag n1" }, "N+1"), " repeated query"), h("span", {}, h("span", { class: "tag slow" }, "SLOW"), " slow query"),
      h("span", {}, h("span", { class: "tag async" }, "ASYNC"), " queued execution")));
}

function findingsPanels(n1, slow, indexes, adviceError) {
  const n1Panel = h("div", { class: "panel", id: "n1-panel" }, h("div", { class: "panel-body" }, h("h3", {}, "N+1 queries", h("span", { class: "count-pill" }, n1.length))),
    n1.length ? n1.map((w) => h("div", { class: "finding" },
      h("div", { class: "title" }, `${w.count ?? w.max_count}× ${w.table}`, " ", w.concurrent ? h("span", { class: "badge warn" }, "concurrent") : null,
        w.traces ? h("span", { class: "meta" }, ` in ${w.traces} request${w.traces === 1 ? "" : "s"}`) : null),
      h("div", { class: "msg" }, w.message), h("pre", {}, w.sql_shape), w.suggestion ? h("div", { class: "msg" }, "→ ", w.suggestion) : null))
      : h("div", { class: "finding msg" }, "None: no query shape repeats under one parent."));
  const slowPanel = h("div", { class: "panel", id: "slow-panel" }, h("div", { class: "panel-body" }, h("h3", {}, "Slow queries", h("span", { class: "count-pill" }, slow.length))),
    slow.length ? slow.map((q) => h("div", { class: "finding" },
      h("div", { class: "title" }, `${q.operation} ${q.table} · ${ms(q.duration_ms ?? q.max_duration_ms)}`,
        q.occurrences ? h("span", { class: "meta" }, ` · ${q.occurrences}× · avg ${ms(q.avg_duration_ms)}`) : null),
      h("div", { class: "msg" }, q.message), q.sql_shape ? h("pre", {}, q.sql_shape) : null))
      : h("div", { class: "finding msg" }, "None over the slow_query_ms threshold."));
  const indexPanel = h("div", { class: "panel", id: "index-panel" }, h("div", { class: "panel-body" }, h("h3", {}, "Suggested indexes", h("span", { class: "count-pill" }, indexes.length))),
    indexes.length ? indexes.map((ix) => h("div", { class: "finding" },
      h("div", { class: "title" }, `${ix.table} (${(ix.columns || []).join(", ")})`,
        ix.est_cost_before != null ? h("span", { class: "meta" }, ` · planner cost ${ix.est_cost_before} → ${ix.est_cost_after}`) : null),
      h("div", { class: "msg" }, ix.reason), h("div", { class: "ddl-row" }, h("pre", { class: "ddl" }, ix.ddl), copyButton(ix.ddl))))
      : h("div", { class: "finding msg" }, adviceError || "None needed."));
  return h("div", { class: "grid" }, n1Panel, slowPanel, indexPanel);
}

function logTable(records, showTrace) {
  if (!records.length) return h("div", { class: "empty" }, "No log lines.");
  return h("table", { class: "list", id: "logs" },
    h("thead", {}, h("tr", {}, ["Time", "Level", "Function", "Message", showTrace ? "Request" : null].filter(Boolean).map((t) => h("th", {}, t)))),
    h("tbody", {}, records.map((r) => h("tr", { "data-level": r.level },
      h("td", { class: "mono" }, clock(r.ts_us)), h("td", {}, h("span", { class: "log-level " + r.level }, r.level)),
      h("td", {}, r.function),
      h("td", { class: "wrap" }, r.message, Object.keys(r.fields || {}).length ? h("span", { class: "log-fields" }, "  " + JSON.stringify(r.fields)) : null),
      showTrace ? h("td", { class: "mono" }, h("a", { href: "#/trace/" + r.trace_id }, r.trace_id.slice(0, 12) + "…")) : null))));
}

async function tracePage(traceId) {
  view.replaceChildren(h("div", { class: "empty" }, "Loading trace…"));
  let trace;
  try {
    trace = await api("/traces/" + encodeURIComponent(traceId));
  } catch (err) {
    return showError(err);
  }
  const detailSlot = h("div", {});
  let selected = null;
  const select = (span, row) => {
    if (selected) selected.classList.remove("selected");
    selected = row;
    row.classList.add("selected");
    detailSlot.replaceChildren(spanDetail(span));
  };
  const asyncCount = trace.spans.filter((sp) => sp.name.startsWith("async →")).length;
  const failed = trace.status === "error"
    ? trace.spans.filter((sp) => sp.status === "error").sort((a, b) => (b.attrs["error.file"] ? 1 : 0) - (a.attrs["error.file"] ? 1 : 0) || b.depth - a.depth)[0]
    : null;
  const errorPanel = failed ? h("div", { class: "error-box", id: "trace-error", role: "alert" },
    h("b", {}, failed.attrs["error.code"] || "error", " in ", failed.kind, " ", failed.name), failed.attrs["error.message"] ? ": " + failed.attrs["error.message"] : "",
    failed.attrs["error.file"] ? h("div", { class: "mono", style: "margin-top:4px" }, `at ${failed.attrs["error.file"]}:${failed.attrs["error.line"] ?? "?"}`) : null) : null;
  view.replaceChildren(...[
    h("div", { class: "page-head" }, h("a", { class: "back", href: "#/traces" }, "← Requests"), h("h1", {}, trace.name), statusBadge(trace.status, trace.http_status)),
    h("div", { class: "panel" }, h("div", { class: "trace-head" },
      h("div", { class: "stat" }, h("b", {}, ms(trace.duration_ms)), h("span", {}, "Duration")),
      h("div", { class: "stat" }, h("b", {}, trace.span_count), h("span", {}, "Spans")),
      h("div", { class: "stat" }, h("b", {}, trace.spans.filter((sp) => sp.kind === "db").length), h("span", {}, "Queries")),
      h("div", { class: "stat" }, h("b", {}, asyncCount), h("span", {}, "Async runs")),
      h("div", { class: "stat" }, h("b", {}, trace.function || "—"), h("span", {}, "Function")),
      h("div", { class: "stat" }, h("b", {}, new Date(trace.start_us / 1000).toLocaleString()), h("span", {}, "Started")),
      h("span", { class: "spacer" }),
      h("div", { class: "stat" }, h("code", { id: "trace-id" }, trace.trace_id), h("span", {}, "Request id")), copyButton(trace.trace_id))),
    errorPanel ? h("div", { style: "margin-top:16px" }, errorPanel) : null,
    h("div", { style: "margin-top:16px" }, waterfall(trace, select)),
    detailSlot,
    findingsPanels(trace.n1_warnings, trace.slow_queries, trace.suggested_indexes, trace.advice_error),
    h("div", { class: "panel" }, h("div", { class: "panel-body" }, h("h3", {}, "Logs", h("span", { class: "count-pill" }, trace.logs.length))), logTable(trace.logs, false)),
  ].filter(Boolean));
}
