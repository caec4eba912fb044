/* Flux dashboard, schema page: tables as boxes, foreign keys as SVG edges, suggested indexes marked. */
"use strict";

/* ---------- schema graph ---------- */

function layoutTables(tables) {
  // Columns left to right follow foreign keys: a table sits right of every table it references
  // (its "level"), and a table nobody depends on further is pulled right, next to its nearest referrer.
  const byName = new Map(tables.map((t) => [t.name, t]));
  const level = new Map();
  const depth = (t, seen) => {
    if (level.has(t.name)) return level.get(t.name);
    if (seen.has(t.name)) return 0;
    seen.add(t.name);
    let d = 0;
    for (const fk of t.foreign_keys || []) {
      const ref = byName.get(fk.ref_table);
      if (ref && ref !== t) d = Math.max(d, depth(ref, seen) + 1);
    }
    level.set(t.name, d);
    return d;
  };
  tables.forEach((t) => depth(t, new Set()));
  const column = new Map(level);
  const referrers = new Map();
  for (const t of tables) for (const fk of t.foreign_keys || []) {
    if (fk.ref_table !== t.name && byName.has(fk.ref_table)) referrers.set(fk.ref_table, [...(referrers.get(fk.ref_table) || []), t.name]);
  }
  for (const t of [...tables].sort((a, b) => level.get(b.name) - level.get(a.name))) {
    const refs = referrers.get(t.name);
    if (refs) column.set(t.name, Math.max(level.get(t.name), Math.min(...refs.map((r) => column.get(r))) - 1));
  }
  return column;
}

function schemaSvg(graph) {
  const tables = graph.tables || [];
  const suggested = graph.suggested_indexes || [];
  const suggestedCols = new Map();
  for (const ix of suggested) for (const c of ix.columns || []) suggestedCols.set(ix.table + "." + c, ix);
  const level = layoutTables(tables);
  const W = 240, ROW = 22, HEAD = 32, GAPX = 110, GAPY = 34, PAD = 20;
  const columns = [];
  for (const t of tables) { const l = level.get(t.name) || 0; (columns[l] = columns[l] || []).push(t); }
  const pos = new Map();
  let height = 0;
  columns.forEach((col, ci) => {
    let y = PAD;
    for (const t of col || []) {
      const hgt = HEAD + ROW * (t.columns || []).length + 8;
      pos.set(t.name, { x: PAD + ci * (W + GAPX), y, h: hgt });
      y += hgt + GAPY;
    }
    height = Math.max(height, y);
  });
  const width = PAD * 2 + columns.length * W + Math.max(0, columns.length - 1) * GAPX;
  const colY = (t, name) => {
    const p = pos.get(t.name);
    const i = (t.columns || []).findIndex((c) => c.name === name);
    return p.y + HEAD + ROW * Math.max(i, 0) + ROW / 2 + 2;
  };
  const edges = [];
  for (const t of tables) {
    for (const fk of t.foreign_keys || []) {
      const ref = tables.find((x) => x.name === fk.ref_table);
      if (!ref) continue;
      const a = pos.get(t.name), b = pos.get(ref.name);
      const y1 = colY(t, (fk.columns || [])[0]), y2 = colY(ref, (fk.ref_columns || [])[0]);
      const leftToRight = b.x < a.x;
      const x1 = leftToRight ? a.x : a.x + W, x2 = leftToRight ? b.x + W : b.x;
      const mid = (x1 + x2) / 2;
      edges.push(s("path", { class: "edge", d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, "marker-end": "url(#arrow)",
        "data-from": t.name, "data-to": ref.name }));
    }
  }
  const boxes = tables.map((t) => {
    const p = pos.get(t.name);
    const pk = new Set(t.primary_key || []);
    const indexed = new Set((t.indexes || []).flatMap((ix) => ix.columns || []));
    const fkCols = new Set((t.foreign_keys || []).flatMap((fk) => fk.columns || []));
    const rows = (t.columns || []).map((c, i) => {
      const y = p.y + HEAD + ROW * i;
      const hint = suggestedCols.get(t.name + "." + c.name);
      return s("g", { class: hint ? "col suggested" : "col" },
        hint ? s("rect", { class: "mark", x: p.x + 1, y: y + 2, width: W - 2, height: ROW }) : null,
        pk.has(c.name) || fkCols.has(c.name) ? s("text", { x: p.x + 10, y: y + 16, class: "keymark" }, pk.has(c.name) ? "PK" : "FK") : null,
        s("text", { x: p.x + 32, y: y + 17, class: pk.has(c.name) ? "pk" : "" }, c.name),
        s("text", { x: p.x + W - 12, y: y + 17, "text-anchor": "end", class: "ctype" }, c.type + (c.nullable ? "?" : "") + (indexed.has(c.name) && !pk.has(c.name) ? " ·idx" : "")),
        hint ? s("circle", { class: "idx-badge", cx: p.x + W - 4, cy: y + 12, r: 4 }, s("title", {}, "suggested index: " + hint.ddl)) : null);
    });
    return s("g", { class: "tbl", "data-table": t.name },
      s("rect", { class: "box", x: p.x, y: p.y, width: W, height: p.h, rx: 8 }),
      s("rect", { class: "head", x: p.x, y: p.y, width: W, height: HEAD, rx: 8 }),
      s("rect", { class: "head", x: p.x, y: p.y + HEAD - 8, width: W, height: 8 }),
      s("text", { class: "tname", x: p.x + 12, y: p.y + 21 }, t.name), rows);
  });
  return s("svg", { class: "schema", width, height: Math.max(height, 120), viewBox: `0 0 ${width} ${Math.max(height, 120)}`, role: "img", "aria-label": "database schema graph" },
    s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      s("path", { d: "M0,0 L10,5 L0,10 z", fill: "#94a3b8" }))),
    edges, boxes);
}

async function schemaPage() {
  view.replaceChildren(h("div", { class: "empty" }, "Loading schema…"));
  let graph;
  try {
    graph = await api("/schema/graph");
  } catch (err) {
    if (err.status === 503) {
      return view.replaceChildren(h("div", { class: "page-head" }, h("h1", {}, "Schema")), h("div", { class: "panel empty" }, err.message));
    }
    return showError(err);
  }
  const suggested = graph.suggested_indexes || [];
  view.replaceChildren(...[
    h("div", { class: "page-head" }, h("h1", {}, "Schema"), h("span", { class: "sub" }, `${graph.tables.length} tables · arrows are foreign keys · amber rows have a suggested index`)),
    h("div", { class: "panel schema-wrap", id: "schema" }, graph.tables.length ? schemaSvg(graph) : h("div", { class: "empty" }, "No tables yet: add a migration under schema/.")),
    suggested.length ? h("div", { class: "panel", id: "schema-indexes" }, h("div", { class: "panel-body" }, h("h3", {}, "Suggested indexes")),
      suggested.map((ix) => h("div", { class: "finding" }, h("div", { class: "title" }, ix.table + " (" + (ix.columns || []).join(", ") + ")"),
        ix.reason ? h("div", { class: "msg" }, ix.reason) : null, ix.ddl ? h("div", { class: "ddl-row" }, h("pre", { class: "ddl" }, ix.ddl), copyButton(ix.ddl)) : null))) : null,
  ].filter(Boolean));
}
