// latentspace explorer: maps of a collection's space drawn with WebGL, served by `latentspace serve`.
// No build step and no network beyond this server. The view lives in the URL's hash.
"use strict";

const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
  "#9c755f", "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];
const BASE = [0.37, 0.47, 0.62];  // uncoloured points
const OTHER = "#c4c4c4";

const $ = (id) => document.getElementById(id);
const hex = (h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16) / 255);

// -- the server --------------------------------------------------------------------------------
async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  const key = sessionStorage.getItem("ls-key");
  if (key) headers.Authorization = "Bearer " + key;
  // relative to the page, so that the explorer also works under a reverse proxy's prefix
  const resp = await fetch(path.replace(/^\//, ""), { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await resp.json().catch(() => ({ error: "HTTPError", message: resp.statusText }));
  if (!resp.ok) {
    const err = new Error(`${data.error}: ${data.message}`);
    err.status = resp.status;
    throw err;
  }
  return data;
}

function status(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", !!isError);
}

// -- a WebGL point map -------------------------------------------------------------------------
const VS = `attribute vec2 p; attribute vec3 c; attribute float s;
uniform vec2 scale; uniform vec2 offset; varying vec3 vc;
void main() { gl_Position = vec4(p * scale + offset, 0.0, 1.0); gl_PointSize = s; vc = c; }`;
const FS = `precision mediump float; varying vec3 vc;
void main() { vec2 d = gl_PointCoord - vec2(0.5); if (dot(d, d) > 0.25) discard; gl_FragColor = vec4(vc, 0.85); }`;

class PointMap {
  constructor(panel, hooks) {
    this.panel = panel;
    this.stage = panel.querySelector(".stage");
    this.canvas = panel.querySelector("canvas.gl");
    this.over = panel.querySelector("canvas.overlay");
    this.hooks = hooks;
    // no multisampling and no preserved buffer: both cost a full-canvas pass per frame (on a
    // software rasteriser 100,000 points went from 146 ms to 50 ms a frame); round points come
    // from the fragment shader
    const gl = this.canvas.getContext("webgl", { preserveDrawingBuffer: false, antialias: false, premultipliedAlpha: false });
    if (!gl) throw new Error("This browser has no WebGL: the map cannot be drawn.");
    this.gl = gl;
    const prog = gl.createProgram();
    for (const [type, src] of [[gl.VERTEX_SHADER, VS], [gl.FRAGMENT_SHADER, FS]]) {
      const sh = gl.createShader(type);
      gl.shaderSource(sh, src);
      gl.compileShader(sh);
      gl.attachShader(prog, sh);
    }
    gl.linkProgram(prog);
    gl.useProgram(prog);
    this.prog = prog;
    this.buf = { p: gl.createBuffer(), c: gl.createBuffer(), s: gl.createBuffer() };
    this.top = { p: gl.createBuffer(), c: gl.createBuffer(), s: gl.createBuffer(), n: 0 };  // highlighted, drawn last
    this.loc = { p: gl.getAttribLocation(prog, "p"), c: gl.getAttribLocation(prog, "c"), s: gl.getAttribLocation(prog, "s"),
      scale: gl.getUniformLocation(prog, "scale"), offset: gl.getUniformLocation(prog, "offset") };
    gl.enable(gl.BLEND);
    gl.blendFunc(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA);
    this.n = 0;
    this.overlay = {};
    this.view = { cx: 0, cy: 0, s: 1 };
    this.events();
    new ResizeObserver(() => this.resize()).observe(this.stage);
  }

  setPoints(xs, ys, ids) {
    this.xs = Float32Array.from(xs);
    this.ys = Float32Array.from(ys);
    this.ids = ids;
    this.index = new Map(ids.map((id, i) => [id, i]));
    this.n = xs.length;
    const xy = new Float32Array(2 * this.n);
    for (let i = 0; i < this.n; i++) { xy[2 * i] = this.xs[i]; xy[2 * i + 1] = this.ys[i]; }
    const gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.buf.p);
    gl.bufferData(gl.ARRAY_BUFFER, xy, gl.STATIC_DRAW);
    this.buildGrid();
    this.fit();
    this.setStyle(null, null);
  }

  // colours: an array of [r, g, b] per point (null: all alike); highlight: a Set of point numbers
  setStyle(colors, highlight) {
    const n = this.n, gl = this.gl;
    const c = new Float32Array(3 * n), s = new Float32Array(n);
    const dpr = window.devicePixelRatio || 1;
    const base = Math.max(2.2, Math.min(7, 900 / Math.sqrt(n + 1))) * dpr;
    const dim = highlight && highlight.size > 0;
    for (let i = 0; i < n; i++) {
      let col = colors ? colors[i] : BASE;
      if (dim && !highlight.has(i)) col = [0.4 * col[0] + 0.58, 0.4 * col[1] + 0.58, 0.4 * col[2] + 0.58];  // faded, hue kept
      c.set(col, 3 * i);
      s[i] = dim && highlight.has(i) ? base * 1.35 : base;
    }
    this.colors = colors;
    this.highlight = highlight || new Set();
    gl.bindBuffer(gl.ARRAY_BUFFER, this.buf.c);
    gl.bufferData(gl.ARRAY_BUFFER, c, gl.STATIC_DRAW);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.buf.s);
    gl.bufferData(gl.ARRAY_BUFFER, s, gl.STATIC_DRAW);
    const hi = dim ? [...highlight] : [];
    const tp = new Float32Array(2 * hi.length), tc = new Float32Array(3 * hi.length), ts = new Float32Array(hi.length);
    hi.forEach((i, k) => {
      tp[2 * k] = this.xs[i]; tp[2 * k + 1] = this.ys[i];
      tc.set(c.subarray(3 * i, 3 * i + 3), 3 * k); ts[k] = s[i];
    });
    for (const [name, arr] of [["p", tp], ["c", tc], ["s", ts]]) {
      gl.bindBuffer(gl.ARRAY_BUFFER, this.top[name]);
      gl.bufferData(gl.ARRAY_BUFFER, arr, gl.STATIC_DRAW);
    }
    this.top.n = hi.length;
    this.draw();
  }

  buildGrid() {
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < this.n; i++) {
      x0 = Math.min(x0, this.xs[i]); x1 = Math.max(x1, this.xs[i]);
      y0 = Math.min(y0, this.ys[i]); y1 = Math.max(y1, this.ys[i]);
    }
    if (!(x1 > x0)) { x0 -= 1; x1 += 1; }
    if (!(y1 > y0)) { y0 -= 1; y1 += 1; }
    const g = 128;
    this.bounds = { x0, x1, y0, y1 };
    this.grid = { g, cells: Array.from({ length: g * g }, () => []) };
    for (let i = 0; i < this.n; i++) this.grid.cells[this.cellOf(this.xs[i], this.ys[i])].push(i);
  }

  cellOf(x, y) {
    const { x0, x1, y0, y1 } = this.bounds, g = this.grid.g;
    const cx = Math.min(g - 1, Math.max(0, Math.floor((x - x0) / (x1 - x0) * g)));
    const cy = Math.min(g - 1, Math.max(0, Math.floor((y - y0) / (y1 - y0) * g)));
    return cy * g + cx;
  }

  fit() {
    const { x0, x1, y0, y1 } = this.bounds;
    const w = this.stage.clientWidth || 600, h = this.stage.clientHeight || 400;
    this.view = { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, s: 0.92 * Math.min(w / (x1 - x0), h / (y1 - y0)) };
  }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    for (const c of [this.canvas, this.over]) {
      c.width = Math.max(1, Math.round(this.stage.clientWidth * dpr));
      c.height = Math.max(1, Math.round(this.stage.clientHeight * dpr));
    }
    if (this.n && !this.fitted) { this.fit(); this.fitted = true; }
    this.draw();
  }

  toScreen(x, y) {  // CSS pixels within the stage
    const w = this.stage.clientWidth, h = this.stage.clientHeight, v = this.view;
    return [(x - v.cx) * v.s + w / 2, h / 2 - (y - v.cy) * v.s];
  }

  toData(sx, sy) {
    const w = this.stage.clientWidth, h = this.stage.clientHeight, v = this.view;
    return [(sx - w / 2) / v.s + v.cx, (h / 2 - sy) / v.s + v.cy];
  }

  pointOnScreen(i) { return this.toScreen(this.xs[i], this.ys[i]); }

  nearest(sx, sy, radius = 8) {
    if (!this.n) return -1;
    const [x, y] = this.toData(sx, sy);
    const r = radius / this.view.s, g = this.grid.g, { x0, x1, y0, y1 } = this.bounds;
    const c0 = Math.floor((x - r - x0) / (x1 - x0) * g), c1 = Math.floor((x + r - x0) / (x1 - x0) * g);
    const r0 = Math.floor((y - r - y0) / (y1 - y0) * g), r1 = Math.floor((y + r - y0) / (y1 - y0) * g);
    let best = -1, bestD = r * r;
    for (let cy = Math.max(0, r0); cy <= Math.min(g - 1, r1); cy++) {
      for (let cx = Math.max(0, c0); cx <= Math.min(g - 1, c1); cx++) {
        for (const i of this.grid.cells[cy * g + cx]) {
          const d = (this.xs[i] - x) ** 2 + (this.ys[i] - y) ** 2;
          if (d <= bestD) { bestD = d; best = i; }
        }
      }
    }
    return best;
  }

  inPolygon(poly) {  // points inside a screen-space polygon
    const out = [];
    for (let i = 0; i < this.n; i++) {
      const [px, py] = this.pointOnScreen(i);
      let inside = false;
      for (let a = 0, b = poly.length - 1; a < poly.length; b = a++) {
        const [xa, ya] = poly[a], [xb, yb] = poly[b];
        if ((ya > py) !== (yb > py) && px < (xb - xa) * (py - ya) / (yb - ya) + xa) inside = !inside;
      }
      if (inside) out.push(i);
    }
    return out;
  }

  draw() {
    const gl = this.gl, w = this.canvas.width, h = this.canvas.height;
    gl.viewport(0, 0, w, h);
    gl.clearColor(1, 1, 1, 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    if (this.n) {
      const cw = this.stage.clientWidth || 1, ch = this.stage.clientHeight || 1, v = this.view;
      const sx = 2 * v.s / cw, sy = 2 * v.s / ch;
      gl.uniform2f(this.loc.scale, sx, sy);
      gl.uniform2f(this.loc.offset, -v.cx * sx, -v.cy * sy);
      for (const [bufs, count] of [[this.buf, this.n], [this.top, this.top.n]]) {
        if (!count) continue;
        for (const [name, size] of [["p", 2], ["c", 3], ["s", 1]]) {
          gl.bindBuffer(gl.ARRAY_BUFFER, bufs[name]);
          gl.enableVertexAttribArray(this.loc[name]);
          gl.vertexAttribPointer(this.loc[name], size, gl.FLOAT, false, 0, 0);
        }
        gl.drawArrays(gl.POINTS, 0, count);
      }
    }
    this.drawOverlay();
  }

  drawOverlay() {
    const ctx = this.over.getContext("2d"), dpr = window.devicePixelRatio || 1, o = this.overlay;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, this.over.width, this.over.height);
    if (o.labels) {
      ctx.font = "600 12px system-ui, sans-serif";
      ctx.textAlign = "center";
      for (const l of o.labels) {
        const [x, y] = this.toScreen(l.x, l.y);
        ctx.lineWidth = 4; ctx.strokeStyle = "rgba(255,255,255,.9)"; ctx.strokeText(l.text, x, y);
        ctx.fillStyle = l.color || "#1d2330"; ctx.fillText(l.text, x, y);
      }
    }
    if (o.links) {
      const [fx, fy] = this.toScreen(o.links.x, o.links.y);
      ctx.strokeStyle = o.links.color; ctx.lineWidth = 1.2;
      for (const i of o.links.to) {
        const [tx, ty] = this.pointOnScreen(i);
        ctx.beginPath(); ctx.moveTo(fx, fy); ctx.lineTo(tx, ty); ctx.stroke();
        ctx.beginPath(); ctx.arc(tx, ty, 5, 0, 2 * Math.PI); ctx.stroke();
      }
      ctx.fillStyle = o.links.color;
      ctx.beginPath(); ctx.arc(fx, fy, o.links.marker ? 7 : 5, 0, 2 * Math.PI); ctx.fill();
      if (o.links.marker) {
        ctx.font = "600 12px system-ui, sans-serif"; ctx.textAlign = "left";
        ctx.lineWidth = 4; ctx.strokeStyle = "rgba(255,255,255,.9)"; ctx.strokeText(o.links.marker, fx + 10, fy + 4);
        ctx.fillText(o.links.marker, fx + 10, fy + 4);
      }
    }
    if (o.path) {
      ctx.strokeStyle = "#d9480f"; ctx.lineWidth = 2; ctx.beginPath();
      o.path.xs.forEach((x, k) => { const [sx, sy] = this.toScreen(x, o.path.ys[k]); k ? ctx.lineTo(sx, sy) : ctx.moveTo(sx, sy); });
      ctx.stroke();
      o.path.xs.forEach((x, k) => {
        const [sx, sy] = this.toScreen(x, o.path.ys[k]);
        ctx.fillStyle = k === o.path.at ? "#d9480f" : "#fff"; ctx.beginPath(); ctx.arc(sx, sy, k === o.path.at ? 6 : 3.5, 0, 2 * Math.PI);
        ctx.fill(); ctx.stroke();
      });
    }
    if (o.picks) {
      for (const [k, i] of o.picks.entries()) {
        const [sx, sy] = this.pointOnScreen(i);
        ctx.fillStyle = "#d9480f"; ctx.font = "700 12px system-ui"; ctx.fillText(k ? "B" : "A", sx + 6, sy - 6);
      }
    }
    if (this.lasso) {
      ctx.strokeStyle = "#2563eb"; ctx.fillStyle = "rgba(37,99,235,.08)"; ctx.lineWidth = 1.5; ctx.beginPath();
      this.lasso.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.closePath(); ctx.fill(); ctx.stroke();
    }
  }

  events() {
    const st = this.stage;
    let drag = null;
    const pos = (e) => { const r = st.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
    st.addEventListener("mousedown", (e) => {
      const [x, y] = pos(e);
      drag = { x, y, moved: false, lasso: e.shiftKey, view: { ...this.view } };
      if (e.shiftKey) this.lasso = [[x, y]];
      st.style.cursor = e.shiftKey ? "crosshair" : "grabbing";
    });
    window.addEventListener("mousemove", (e) => {
      const [x, y] = pos(e);
      if (!drag) {  // every map listens on the window: only the one under the pointer answers
        const inside = st.clientWidth > 0 && x >= 0 && y >= 0 && x <= st.clientWidth && y <= st.clientHeight;
        if (inside || this.hovering) this.hooks.hover(this, inside ? this.nearest(x, y) : -1, e);
        this.hovering = inside;
        return;
      }
      if (Math.abs(x - drag.x) + Math.abs(y - drag.y) > 3) drag.moved = true;
      if (drag.lasso) { this.lasso.push([x, y]); this.drawOverlay(); return; }
      this.view.cx = drag.view.cx - (x - drag.x) / this.view.s;
      this.view.cy = drag.view.cy + (y - drag.y) / this.view.s;
      this.draw();
    });
    window.addEventListener("mouseup", (e) => {
      if (!drag) return;
      const [x, y] = pos(e);
      st.style.cursor = "grab";
      if (drag.lasso && this.lasso && this.lasso.length > 2) this.hooks.lasso(this, this.inPolygon(this.lasso));
      else if (!drag.moved) this.hooks.click(this, this.nearest(x, y));
      this.lasso = null;
      drag = null;
      this.drawOverlay();
    });
    st.addEventListener("wheel", (e) => {
      e.preventDefault();
      const [x, y] = pos(e), [dx, dy] = this.toData(x, y);
      this.view.s *= Math.exp(-e.deltaY * 0.0015);
      const [nx, ny] = this.toData(x, y);
      this.view.cx += dx - nx; this.view.cy += dy - ny;
      this.draw();
    }, { passive: false });
  }
}

// -- the explorer's state and the URL ---------------------------------------------------------------
const state = { collection: "", fp: "", other: "", method: "pca", seed: 0, color: "", sel: [], q: "", latent: "" };
const maps = {};
const data = {};  // panel -> the map's data from the server

function readHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  state.collection = h.get("c") || ""; state.fp = h.get("fp") || ""; state.other = h.get("b") || "";
  state.method = h.get("m") || "pca"; state.seed = parseInt(h.get("s") || "0", 10) || 0;
  state.color = h.get("color") || ""; state.q = h.get("q") || ""; state.latent = h.get("lat") || "";
  state.sel = (h.get("sel") || "").split(",").filter(Boolean);
}

function writeHash() {
  const h = new URLSearchParams();
  if (state.latent) h.set("lat", state.latent);
  if (state.collection) { h.set("c", state.collection); if (state.fp) h.set("fp", state.fp); }
  if (state.other) h.set("b", state.other);
  h.set("m", state.method); h.set("s", String(state.seed));
  if (state.color) h.set("color", state.color);
  if (state.q) h.set("q", state.q);
  if (state.sel.length) h.set("sel", state.sel.slice(0, 300).join(","));
  history.replaceState(null, "", "#" + h.toString());
}

// -- colours ----------------------------------------------------------------------------------------
function colorsFor(values, kind) {
  if (!values) return { colors: null, legend: [] };
  const distinct = new Set(values.filter((v) => v !== null).map(String));
  const categorical = values.every((v) => v === null || Number.isInteger(v)) && distinct.size <= PALETTE.length;
  if (kind === "agreement" || (!categorical && values.every((v) => typeof v === "number" || v === null))) {
    const nums = values.filter((v) => typeof v === "number");
    const lo = kind === "agreement" ? 0 : Math.min(...nums), hi = kind === "agreement" ? 1 : Math.max(...nums);
    const stops = [[0.84, 0.19, 0.15], [0.96, 0.68, 0.26], [0.19, 0.51, 0.74]];  // red, amber, blue
    const ramp = (t) => {
      const u = Math.max(0, Math.min(1, t)) * 2, k = Math.min(1, Math.floor(u)), f = u - k;
      return stops[k].map((v, j) => v + (stops[k + 1][j] - v) * f);
    };
    const colors = values.map((v) => (typeof v === "number" ? ramp(hi > lo ? (v - lo) / (hi - lo) : 0.5) : hex(OTHER)));
    const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2));
    return { colors, legend: [[fmt(lo), ramp(0)], ["→", null], [fmt(hi), ramp(1)]] };
  }
  const counts = new Map();
  for (const v of values) counts.set(String(v), (counts.get(String(v)) || 0) + 1);
  const top = [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, PALETTE.length).map(([k]) => k);
  const of = new Map(top.map((k, i) => [k, hex(PALETTE[i])]));
  const colors = values.map((v) => of.get(String(v)) || hex(OTHER));
  const legend = top.map((k) => [k, of.get(k)]);
  if (counts.size > top.length) legend.push([`${counts.size - top.length} more`, hex(OTHER)]);
  return { colors, legend };
}

function drawLegend(panel, legend, title) {
  const el = panel.querySelector(".legend");
  el.innerHTML = "";
  if (title) { const t = document.createElement("span"); t.textContent = title + ":"; el.appendChild(t); }
  for (const [label, rgb] of legend) {
    const s = document.createElement("span");
    if (rgb) { const i = document.createElement("i"); i.style.background = `rgb(${rgb.map((v) => Math.round(v * 255)).join(",")})`; s.appendChild(i); }
    s.appendChild(document.createTextNode(label));
    el.appendChild(s);
  }
}

function restyle() {
  for (const key of ["A", "B"]) {
    const m = maps[key], d = data[key];
    if (!m || !d) continue;
    let values = null, kind = "", title = "";
    if (state.color === "__agreement" && d.agreement) { values = d.ids.map((id) => d.agreement.get(id) ?? null); kind = "agreement"; title = "neighbourhood agreement"; }
    else if (state.color === "__cluster" && d.clusters) { values = d.ids.map((id) => d.clusters.get(id) ?? null).map((v) => (v === null ? null : "cluster " + v)); title = "clusters"; }
    else if (state.color && d.meta) { values = d.meta; title = state.color; }
    else if (d.labels) { values = d.labels; title = "label"; }
    const { colors, legend } = colorsFor(values, kind);
    const hi = new Set(state.sel.map((id) => m.index.get(id)).filter((i) => i !== undefined));
    m.setStyle(colors, hi);
    drawLegend(m.panel, legend, title);
  }
}

// -- loading ------------------------------------------------------------------------------------------
async function loadCollections() {
  const list = await api("GET", "/v1/collections");
  for (const sel of [$("collection"), $("other")]) {
    const keep = sel.id === "other" ? '<option value="">(none)</option>' : "";
    sel.innerHTML = keep + list.map((c) => `<option value="${esc(c.name)}">${esc(c.name)} (${c.count.toLocaleString()})</option>`).join("");
  }
  if (!state.collection && list.length && !state.latent) state.collection = list[0].name;
  $("collection").value = state.collection;
  $("other").value = state.other;
  return list;
}

async function loadMap(key, name) {
  const panel = key === "A" ? $("panelA") : $("panelB");
  panel.querySelector(".name").textContent = name;
  panel.querySelector(".note").textContent = "computing the map…";
  const body = { method: state.method, seed: state.seed };
  if (state.color && !state.color.startsWith("__")) body.color_by = state.color;
  const p = await api("POST", `/v1/collections/${encodeURIComponent(name)}/project`, body);
  data[key] = { name, ids: p.ids, docs: null, meta: p.labels, fields: p.fields, labels: null,
    agreement: data[key] && data[key].name === name ? data[key].agreement : null };
  maps[key].setPoints(p.x, p.y, p.ids);
  maps[key].overlay = {};
  const shown = p.sampled ? `${p.ids.length.toLocaleString()} of ${p.total.toLocaleString()} (sample, seed ${p.seed})` : `${p.ids.length.toLocaleString()} points`;
  panel.querySelector(".note").textContent = `${p.method.toUpperCase()} · ${shown} · fingerprint ${p.fingerprint}`;
  return p;
}

async function openCollection() {
  state.latent = "";
  $("latentModel").value = "";
  $("space").classList.remove("hidden");
  if (!state.collection) { status("This store has no collections yet."); return; }
  const info = await api("GET", `/v1/collections/${encodeURIComponent(state.collection)}`);
  const warned = state.fp && state.fp !== info.fingerprint;
  if (warned) status(`This link was made on space ${state.fp}; ${state.collection} is now in space ${info.fingerprint} (the map shows the current one).`, true);
  state.fp = info.fingerprint;
  showSpace(info);
  await addEarlierSpaces();
  const p = await loadMap("A", state.collection);
  const colorSel = $("color"), keepColor = state.color;
  colorSel.innerHTML = '<option value="">(none)</option>' + p.fields.map((f) => `<option value="${esc(f)}">${esc(f)}</option>`).join("")
    + '<option value="__cluster">clusters</option>' + (state.other ? '<option value="__agreement">agreement of neighbours</option>' : "");
  colorSel.value = keepColor;
  if (keepColor && !keepColor.startsWith("__") && !p.labels) await loadMap("A", state.collection);
  await openOther();
  if (state.color === "__cluster") await clusters();
  restyle();
  if (state.sel.length) showSelection();
  if (state.q) { $("query").value = state.q; await runQuery(state.q); }
  writeHash();
  if (!warned) status(`${info.name}: ${info.count.toLocaleString()} records in ${info.spec.model} (${info.spec.dim}-d, ${info.spec.metric}).`);
}

// a collection's earlier spaces (kept after a migration's switch) can be shown beside it
async function addEarlierSpaces() {
  const sel = $("other");
  sel.querySelectorAll("option.earlier").forEach((o) => o.remove());
  const spaces = await api("GET", `/v1/collections/${encodeURIComponent(state.collection)}/spaces`).catch(() => []);
  for (const s of spaces.filter((s) => !s.current)) {
    const o = document.createElement("option");
    o.value = s.name; o.className = "earlier";
    o.textContent = `${state.collection}, before (${s.spec.model.split("/").pop()}, ${s.fingerprint})`;
    sel.appendChild(o);
  }
  sel.value = state.other;
}

async function openOther() {
  const b = $("panelB");
  b.classList.toggle("hidden", !state.other);
  if (!state.other) { data.B = null; return; }
  await loadMap("B", state.other);
  const cmp = await api("POST", `/v1/collections/${encodeURIComponent(state.collection)}/compare`, { other: state.other, k: 10 });
  const agreement = new Map(cmp.ids.map((id, i) => [id, cmp.agreement[i]]));
  data.A.agreement = agreement; data.B.agreement = agreement;
  b.querySelector(".note").textContent += ` · mean agreement@10 ${cmp.mean.toFixed(2)}`;
}

function showSpace(info) {
  const s = info.spec, rows = [["model", s.model], ["dim", s.dim], ["metric", s.metric], ["normalized", s.normalize],
    ["modality", s.modality], ["fingerprint", info.fingerprint], ["records", info.count.toLocaleString()]];
  if (s.truncate_dim) rows.push(["truncated to", s.truncate_dim]);
  $("spec").innerHTML = rows.map(([k, v]) => `<dt>${k}</dt><dd>${esc(String(v))}</dd>`).join("");
  $("diag").innerHTML = "";
  api("GET", `/v1/collections/${encodeURIComponent(info.name)}/history`).then((h) => {
    $("history").innerHTML = h.map((e) => `<li>${esc(e.action)} <span class="note">${new Date(e.at * 1000).toLocaleString()}</span></li>`).join("");
    $("historyNone").classList.toggle("hidden", h.length > 0);
  }).catch(() => {});
}

// -- interactions -----------------------------------------------------------------------------------
function esc(s) { return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]); }

function showHits(title, hits, note) {
  $("results").classList.remove("hidden");
  $("resultsTitle").textContent = title;
  $("distortion").textContent = note || "";
  $("hits").innerHTML = hits.map((h) => `<li data-id="${esc(h.id)}"><b>${esc(h.id)}</b> <span class="score">${h.score.toFixed(4)}</span>`
    + `<span class="doc">${esc((h.document || "").slice(0, 160))}</span></li>`).join("");
}

async function runQuery(text) {
  if (!state.collection || !text) return;
  state.q = text;
  writeHash();
  const r = await api("POST", `/v1/collections/${encodeURIComponent(state.collection)}/place`, { query: text, k: 10, method: state.method, seed: state.seed });
  const to = r.positions.filter((i) => i !== null);
  maps.A.overlay = { ...maps.A.overlay, links: { x: r.x, y: r.y, to, color: "#d9480f", marker: "“" + text.slice(0, 24) + "”" } };
  maps.A.drawOverlay();
  showHits(`Top ${r.hits.length} for “${text}”`, r.hits, distortionNote(r));
  window.explorerState.lastQuery = r;
}

function distortionNote(r) {
  if (r.map_recall === null) return "";
  const k = r.positions.filter((i) => i !== null).length;
  return `The map keeps ${Math.round(r.map_recall * k)} of these ${k} true neighbours among the ${k} points nearest on the map `
    + `(map recall ${r.map_recall.toFixed(2)}): lines show where the map puts the true top ${k}.`;
}

async function neighboursOf(map, i) {
  const key = map === maps.A ? "A" : "B", name = data[key].name, id = map.ids[i];
  const r = await api("POST", `/v1/collections/${encodeURIComponent(name)}/place`, { id, k: 10, method: state.method, seed: state.seed });
  map.overlay = { ...map.overlay, links: { x: map.xs[i], y: map.ys[i], to: r.positions.filter((p) => p !== null), color: "#2563eb" } };
  map.drawOverlay();
  showHits(`Nearest to ${id} in ${name}`, r.hits, distortionNote(r));
  state.sel = [id];
  showSelection();
  restyle();
  writeHash();
  window.explorerState.lastNeighbours = r;
}

function showSelection() {
  $("selection").classList.toggle("hidden", !state.sel.length);
  $("selCount").textContent = `(${state.sel.length.toLocaleString()})`;
  $("selIds").innerHTML = state.sel.slice(0, 500).map((id) => `<li>${esc(id)}</li>`).join("");
}

function hover(map, i, e) {
  const tip = $("tooltip");
  if (i < 0) { tip.classList.add("hidden"); return; }
  const key = map === maps.A ? "A" : "B", d = data[key];
  if (!d) return;
  const extra = d.meta && state.color ? ` · ${esc(state.color)}: ${esc(String(d.meta[i]))}` : (d.labels ? ` · ${esc(String(d.labels[i]))}` : "");
  const id = d.ids[i];
  const doc = d.docs ? d.docs[i] : documentOf(d.name, id, () => hover(map, i, e));
  tip.innerHTML = `<b>${esc(id)}</b>${extra}<br>${esc((doc || "").slice(0, 220))}`;
  tip.dataset.id = id;
  tip.style.left = Math.min(e.clientX + 14, window.innerWidth - 380) + "px";
  tip.style.top = e.clientY + 14 + "px";
  tip.classList.remove("hidden");
}

// documents are fetched when a point is first hovered (a map of 100,000 points does not carry them)
const documents = new Map();
function documentOf(name, id, redraw) {
  const key = name + "\u0000" + id;
  if (documents.has(key)) return documents.get(key);
  documents.set(key, "…");
  api("POST", `/v1/collections/${encodeURIComponent(name)}/get`, { ids: [id] }).then((r) => {
    documents.set(key, r.length ? r[0].document || "(no document)" : "(deleted)");
    if ($("tooltip").dataset.id === id && !$("tooltip").classList.contains("hidden")) redraw();
  }).catch(() => documents.delete(key));
  return "…";
}

async function clusters() {
  if (!state.collection) return;
  status("clustering…");
  const r = await api("POST", `/v1/collections/${encodeURIComponent(state.collection)}/cluster`, { n_clusters: 8, seed: state.seed });
  const of = new Map(r.ids.map((id, i) => [id, r.labels[i]]));
  data.A.clusters = of;
  state.color = "__cluster";
  $("color").value = "__cluster";
  restyle();
  const m = maps.A, sums = new Map();
  for (let i = 0; i < m.n; i++) {
    const c = of.get(m.ids[i]);
    if (c === undefined || c < 0) continue;
    const s = sums.get(c) || [0, 0, 0];
    s[0] += m.xs[i]; s[1] += m.ys[i]; s[2] += 1; sums.set(c, s);
  }
  m.overlay = { ...m.overlay, labels: r.clusters.filter((c) => sums.has(c.label)).map((c) => {
    const s = sums.get(c.label);
    return { x: s[0] / s[2], y: s[1] / s[2], text: c.terms.slice(0, 3).join(" · ") || "cluster " + c.label };
  }) };
  m.drawOverlay();
  writeHash();
  status(`${r.clusters.length} clusters (k-means, seed ${state.seed}), labelled by their most telling terms.`);
}

// -- latent models ------------------------------------------------------------------------------------
async function openLatent(name) {
  state.latent = name;
  state.collection = "";
  $("collection").value = "";
  $("panelB").classList.add("hidden");
  $("space").classList.add("hidden");
  $("results").classList.add("hidden");
  const r = await api("POST", `/v1/latent/${encodeURIComponent(name)}/map`, { seed: state.seed });
  data.A = { name, ids: r.ids, docs: r.ids.map((i) => "latent " + i), labels: r.labels, meta: null };
  data.B = null;
  maps.A.setPoints(r.x, r.y, r.ids);
  maps.A.overlay = {};
  $("panelA").querySelector(".name").textContent = name;
  $("panelA").querySelector(".note").textContent = `${r.about} · ${r.latent_dim}-d, PCA (${r.explained.map((v) => (100 * v).toFixed(0) + "%").join(" + ")} of the variance)`;
  $("latentAbout").textContent = r.about;
  latentPicks = [];
  restyle();
  writeHash();
  status(`Latent model ${name}: click two points, or "Random path".`);
}

let latentPicks = [];
async function latentPath(a, b) {
  const r = await api("POST", `/v1/latent/${encodeURIComponent(state.latent)}/path`, { a, b, steps: 9, method: $("latentMethod").value, seed: state.seed });
  maps.A.overlay = { ...maps.A.overlay, path: { xs: r.x, ys: r.y, at: 0 }, picks: [a, b] };
  $("latentView").classList.remove("hidden");
  $("latentStrip").innerHTML = r.images.map((src, k) => `<img src="${src}" data-k="${k}" alt="step ${k}">`).join("");
  const slider = $("latentSlider");
  slider.max = String(r.images.length - 1);
  slider.value = "0";
  const show = (k) => {
    $("latentBig").src = r.images[k];
    maps.A.overlay.path.at = k;
    maps.A.drawOverlay();
    document.querySelectorAll("#latentStrip img").forEach((img) => img.classList.toggle("on", Number(img.dataset.k) === k));
  };
  slider.oninput = () => show(Number(slider.value));
  $("latentStrip").onclick = (e) => { if (e.target.dataset.k) { slider.value = e.target.dataset.k; show(Number(e.target.dataset.k)); } };
  show(0);
  window.explorerState.lastPath = r;
}

// -- wiring ---------------------------------------------------------------------------------------------
async function guarded(fn) {
  try { await fn(); } catch (err) {
    status(err.status === 401 ? "This server needs an API key: paste one in the box at the top right." : err.message, true);
  }
}

function init() {
  readHash();
  $("key").value = sessionStorage.getItem("ls-key") || "";
  $("method").value = state.method;
  $("seed").value = state.seed;
  const hooks = {
    hover,
    click: (map, i) => {
      if (i < 0) return;
      if (state.latent) {
        latentPicks = [...latentPicks, i].slice(-2);
        maps.A.overlay = { ...maps.A.overlay, picks: latentPicks };
        maps.A.drawOverlay();
        if (latentPicks.length === 2) guarded(() => latentPath(latentPicks[0], latentPicks[1]));
        return;
      }
      guarded(() => neighboursOf(map, i));
    },
    lasso: (map, idx) => { state.sel = idx.map((i) => map.ids[i]); showSelection(); restyle(); writeHash(); },
  };
  try {
    maps.A = new PointMap($("panelA"), hooks);
    maps.B = new PointMap($("panelB"), hooks);
  } catch (err) { status(err.message, true); return; }
  window.explorerState = { state, maps, data };
  $("collection").onchange = () => guarded(() => { state.collection = $("collection").value; state.fp = ""; state.sel = []; state.q = ""; return openCollection(); });
  $("other").onchange = () => guarded(async () => { state.other = $("other").value; if (state.color === "__agreement" && !state.other) state.color = ""; await openCollection(); });
  $("method").onchange = () => guarded(() => { state.method = $("method").value; return state.latent ? openLatent(state.latent) : openCollection(); });
  $("seed").onchange = () => guarded(() => { state.seed = parseInt($("seed").value, 10) || 0; return state.latent ? openLatent(state.latent) : openCollection(); });
  $("color").onchange = () => guarded(async () => {
    state.color = $("color").value;
    if (state.color === "__cluster") return clusters();
    if (state.color && !state.color.startsWith("__")) await loadMap("A", state.collection);
    if (state.color && !state.color.startsWith("__") && state.other) await loadMap("B", state.other).catch(() => {});
    restyle(); writeHash();
  });
  $("clusters").onclick = () => guarded(clusters);
  $("queryForm").onsubmit = (e) => { e.preventDefault(); guarded(() => runQuery($("query").value.trim())); };
  $("key").onchange = () => { sessionStorage.setItem("ls-key", $("key").value.trim()); guarded(start); };
  $("clearSel").onclick = () => { state.sel = []; showSelection(); restyle(); writeHash(); };
  $("exportSel").onclick = () => {
    const blob = new Blob([state.sel.join("\n") + "\n"], { type: "text/plain" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob); a.download = `${state.collection || "selection"}-ids.txt`; a.click();
  };
  $("hits").onclick = (e) => {
    const li = e.target.closest("li");
    if (!li) return;
    state.sel = [li.dataset.id]; showSelection(); restyle(); writeHash();
  };
  $("diagnose").onclick = () => guarded(async () => {
    status("diagnosing…");
    const d = await api("POST", `/v1/collections/${encodeURIComponent(state.collection)}/diagnose`, {});
    $("diag").innerHTML = d.findings.map((f) => `<p class="${f.concern ? "concern" : ""}"><b>${esc(f.metric)}</b>: ${esc(f.text)}</p>`).join("");
    status(`Diagnosed ${d.n_points.toLocaleString()} points.`);
  });
  $("latentModel").onchange = () => guarded(() => ($("latentModel").value ? openLatent($("latentModel").value) : openCollection()));
  $("latentRandom").onclick = () => guarded(() => {
    const n = maps.A.n, a = Math.floor(Math.random() * n);
    let b = Math.floor(Math.random() * n);
    if (b === a) b = (a + 1) % n;
    latentPicks = [a, b];
    return latentPath(a, b);
  });
  guarded(start);
}

async function start() {
  await loadCollections();
  const models = await api("GET", "/v1/latent");
  $("latent").classList.toggle("hidden", !models.length);
  $("latentModel").innerHTML = '<option value="">(none)</option>' + models.map((m) => `<option>${esc(m)}</option>`).join("");
  if (state.latent && models.includes(state.latent)) { $("latentModel").value = state.latent; await openLatent(state.latent); return; }
  await openCollection();
}

window.addEventListener("DOMContentLoaded", init);
