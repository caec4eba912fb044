/* Flux dashboard, shared helpers: DOM building, formatting, the API client. Loaded first. */
"use strict";

const API = document.querySelector('meta[name="flux-api"]').content.replace(/\/$/, "");
const KEY_STORAGE = "flux-api-key";
const view = document.getElementById("view");
const conn = document.getElementById("conn");
let timer = null;      // polling of the current page (traces auto-refresh, logs follow)
let routeToken = 0;    // bumps on navigation so late answers of an old page are dropped

/* ---------- small helpers ---------- */

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "style") el.setAttribute("style", value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, value);
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function ms(value) {
  if (value >= 1000) return (value / 1000).toFixed(2) + " s";
  if (value >= 100) return value.toFixed(0) + " ms";
  if (value >= 10) return value.toFixed(1) + " ms";
  return value.toFixed(2) + " ms";
}

function clock(us) {
  const d = new Date(us / 1000);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function ago(us) {
  const seconds = Math.max(0, (Date.now() * 1000 - us) / 1e6);
  if (seconds < 60) return Math.floor(seconds) + "s ago";
  if (seconds < 3600) return Math.floor(seconds / 60) + "m ago";
  if (seconds < 86400) return Math.floor(seconds / 3600) + "h ago";
  return Math.floor(seconds / 86400) + "d ago";
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query] = raw.split("?");
  return { parts: (path || "traces").split("/").filter(Boolean), params: new URLSearchParams(query || "") };
}

function setHashParams(page, params) {
  const clean = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) clean.set(k, v);
  const q = clean.toString();
  history.replaceState(null, "", "#/" + page + (q ? "?" + q : ""));
}

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(path, params) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== "") query.set(k, v);
  const headers = { accept: "application/json" };
  const key = localStorage.getItem(KEY_STORAGE);
  if (key) headers["x-api-key"] = key;
  let response;
  try {
    response = await fetch(API + path + (query.toString() ? "?" + query : ""), { headers, cache: "no-store" });
  } catch (err) {
    conn.className = "status-dot down";
    throw new ApiError(0, "unreachable", "The API did not answer. Is flux dev still running?");
  }
  conn.className = "status-dot up";
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, body && body.error, (body && body.message) || "HTTP " + response.status);
  }
  return body;
}

function copyButton(text) {
  const button = h("button", { class: "small", type: "button", title: "Copy to clipboard" }, "Copy");
  button.addEventListener("click", async (event) => {
    event.stopPropagation();
    try {
      await navigator.clipboard.writeText(text);
    } catch (err) {
      const area = h("textarea", { style: "position:fixed;opacity:0" }, text);
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    button.textContent = "Copied";
    button.classList.add("copied");
    setTimeout(() => { button.textContent = "Copy"; button.classList.remove("copied"); }, 1500);
  });
  return button;
}

function statusBadge(status, httpStatus) {
  const bad = status === "error" || (httpStatus || 0) >= 500;
  const cls = bad ? "error" : (httpStatus || 0) >= 400 ? "warn" : "ok";
  return h("span", { class: "badge " + cls }, httpStatus != null ? String(httpStatus) : status);
}

function showError(err) {
  if (err instanceof ApiError && err.status === 401) return keyPrompt();
  view.replaceChildren(h("div", { class: "error-box", role: "alert" }, err.message || String(err)));
}

function keyPrompt() {
  const input = h("input", { type: "text", placeholder: "flx_live_…", autocomplete: "off", "aria-label": "Admin API key" });
  view.replaceChildren(h("div", { class: "panel keybox" }, h("div", { class: "panel-body" },
    h("h2", {}, "Admin key required"),
    h("div", { class: "meta" }, "This API is protected. Paste an admin API key (flux keys create NAME --scope admin); it is kept in this browser only."),
    h("form", { onsubmit: (e) => { e.preventDefault(); localStorage.setItem(KEY_STORAGE, input.value.trim()); route(); } },
      input, h("button", { class: "primary", type: "submit" }, "Save")))));
}
