// aisketcher's page: draw on the pad, and watch the model finish, redraw, heal or draw a sketch.
// Strokes are lists of [x, y] points in the pad's CSS pixels; the server maps its answers back to
// that frame. Results stream as NDJSON lines (see /api/openapi.json).
"use strict";

const MODEL_COLOR = "#d62728";
const USER_COLOR = "#111";
const UNDER_COLOR = "#aaa"; // the user's strokes under a healed drawing, which redraws them
const MIN_STEP = 1.5; // pad pixels between recorded points: finer detail is simplified away anyway
const ERASER_RADIUS = 10; // pad pixels around the eraser's path that it rubs out
// The actions that encode the user's drawing, which a decoder-only model (Google's) cannot.
const ENCODER_ACTIONS = ["redraw", "heal"];

const $ = (id) => document.getElementById(id);
const pad = $("pad");
// model: the model chosen on the page, "" for the server's own (requests then name none).
// history: the strokes before each stroke, rubbing out or clearing, for Undo. rubbing: the
// eraser's last point and the strokes before the rub, while the eraser is down.
const state = {
  strokes: [], current: null, limits: null, controller: null, model: "", hasEncoder: true,
  history: [], erasing: false, rubbing: null,
};

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function pointCount() {
  return state.strokes.reduce((n, s) => n + s.length, 0);
}

// ----- the pad -----
function fitCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const box = canvas.getBoundingClientRect();
  canvas.width = Math.round(box.width * ratio);
  canvas.height = Math.round(box.height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return ctx;
}

function drawStroke(ctx, points, color, toPixel = (p) => p) {
  if (!points.length) return;
  ctx.strokeStyle = color;
  ctx.fillStyle = color;
  const [x0, y0] = toPixel(points[0]);
  if (points.length === 1) {
    ctx.beginPath();
    ctx.arc(x0, y0, ctx.lineWidth / 2, 0, 2 * Math.PI);
    ctx.fill();
    return;
  }
  ctx.beginPath();
  ctx.moveTo(x0, y0);
  for (const p of points.slice(1)) ctx.lineTo(...toPixel(p));
  ctx.stroke();
}

function redrawPad() {
  const ctx = pad.getContext("2d");
  ctx.clearRect(0, 0, pad.width, pad.height);
  ctx.lineWidth = 3;
  ctx.lineCap = ctx.lineJoin = "round";
  for (const s of state.strokes) drawStroke(ctx, s, USER_COLOR);
  if (state.rubbing) {
    const [x, y] = state.rubbing.at;
    ctx.lineWidth = 1;
    ctx.strokeStyle = UNDER_COLOR;
    ctx.beginPath();
    ctx.arc(x, y, ERASER_RADIUS, 0, 2 * Math.PI);
    ctx.stroke();
  }
  $("ink").textContent = state.strokes.length
    ? `${state.strokes.length} stroke(s), ${pointCount()} points`
    : "";
}

function padPoint(event) {
  const box = pad.getBoundingClientRect();
  return [+(event.clientX - box.left).toFixed(1), +(event.clientY - box.top).toFixed(1)];
}

function addPoint(point) {
  const stroke = state.current;
  const last = stroke[stroke.length - 1];
  if (Math.hypot(point[0] - last[0], point[1] - last[1]) < MIN_STEP) return;
  if (state.limits && pointCount() >= state.limits.max_points) {
    status("That is as much detail as the model takes: finish the drawing here.", true);
    return;
  }
  stroke.push(point);
}

// Keeps the strokes as they are now, for Undo (strokes are replaced, never changed, once drawn).
function remember() {
  state.history.push(state.strokes.slice());
}

function distanceToSegment([x, y], [ax, ay], [bx, by]) {
  const [dx, dy] = [bx - ax, by - ay];
  const length2 = dx * dx + dy * dy;
  const t = length2 ? Math.max(0, Math.min(1, ((x - ax) * dx + (y - ay) * dy) / length2)) : 0;
  return Math.hypot(x - ax - t * dx, y - ay - t * dy);
}

// A stroke's points, with points added every MIN_STEP along its segments whose box comes within
// ERASER_RADIUS of the eraser's move from a to b: a line drawn in one long move (a fast mouse, a
// drawing put on the pad) is rubbed out only where the eraser went.
function withPointsUnderEraser(stroke, a, b) {
  const near = (lo, hi, u, v) => Math.min(lo, hi) - ERASER_RADIUS <= Math.max(u, v)
    && Math.min(u, v) <= Math.max(lo, hi) + ERASER_RADIUS;
  const out = [stroke[0]];
  for (const [p, q] of stroke.slice(1).map((q, i) => [stroke[i], q])) {
    const steps = Math.floor(Math.hypot(q[0] - p[0], q[1] - p[1]) / MIN_STEP);
    if (steps > 1 && near(a[0], b[0], p[0], q[0]) && near(a[1], b[1], p[1], q[1])) {
      for (let k = 1; k < steps; k++) {
        out.push([0, 1].map((c) => +(p[c] + ((q[c] - p[c]) * k) / steps).toFixed(1)));
      }
    }
    out.push(q);
  }
  return out;
}

// The eraser's move from a to b: the points within ERASER_RADIUS of it go, and a stroke rubbed
// through in the middle becomes two. A single point left of a longer stroke goes too: a crumb,
// not something drawn.
function rubOut(a, b) {
  const kept = (p) => distanceToSegment(p, a, b) > ERASER_RADIUS;
  const strokes = [];
  let changed = false;
  for (const stroke of state.strokes) {
    const points = withPointsUnderEraser(stroke, a, b);
    if (points.every(kept)) {
      strokes.push(stroke);
      continue;
    }
    changed = true;
    let piece = [];
    for (const p of points) {
      if (kept(p)) {
        piece.push(p);
        continue;
      }
      if (piece.length > 1) strokes.push(piece);
      piece = [];
    }
    if (piece.length > 1) strokes.push(piece);
  }
  if (changed) state.strokes = strokes; // else the same array: the rub changed nothing
}

pad.addEventListener("pointerdown", (event) => {
  if (event.pointerType === "mouse" && event.button !== 0) return;
  if (state.erasing) {
    pad.setPointerCapture(event.pointerId);
    const at = padPoint(event);
    state.rubbing = { at, before: state.strokes };
    rubOut(at, at);
    redrawPad();
    return;
  }
  if (state.limits && state.strokes.length >= state.limits.max_strokes) {
    status("That is as many strokes as the model takes.", true);
    return;
  }
  pad.setPointerCapture(event.pointerId);
  remember();
  state.current = [padPoint(event)];
  state.strokes.push(state.current);
  redrawPad();
});

pad.addEventListener("pointermove", (event) => {
  if (!state.current && !state.rubbing) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) {
    const point = padPoint(e);
    if (state.current) {
      addPoint(point);
    } else {
      rubOut(state.rubbing.at, point);
      state.rubbing.at = point;
    }
  }
  redrawPad();
});

for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => {
    // A rub that rubbed something out is one step for Undo.
    if (state.rubbing && state.strokes !== state.rubbing.before) {
      state.history.push(state.rubbing.before);
    }
    state.current = state.rubbing = null;
    redrawPad(); // without the eraser's circle
  });
}

$("undo").addEventListener("click", () => {
  if (state.history.length) state.strokes = state.history.pop();
  redrawPad();
});
$("clear").addEventListener("click", () => {
  if (state.strokes.length) remember();
  state.strokes = [];
  redrawPad();
});
$("eraser").addEventListener("click", () => {
  state.erasing = !state.erasing;
  $("eraser").setAttribute("aria-pressed", String(state.erasing));
  pad.classList.toggle("erasing", state.erasing);
});
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key === "z") {
    event.preventDefault();
    $("undo").click();
  }
});

// ----- result panels -----
// Maps points into a square of `size` pixels: centred, their larger extent 90% of it.
function fitting(points, size) {
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const [minX, maxX, minY, maxY] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const extent = Math.max(maxX - minX, maxY - minY, 1e-6);
  const scale = (size * 0.9) / extent;
  return ([x, y]) => [
    size / 2 + (x - (minX + maxX) / 2) * scale,
    size / 2 + (y - (minY + maxY) / 2) * scale,
  ];
}

class Panel {
  constructor(userStrokes, highlight, userColor = USER_COLOR) {
    this.user = userStrokes; // the user's drawing under the model's: "finish my drawing", heal
    this.userColor = userColor;
    this.model = []; // the model's strokes, red
    this.penUp = true; // the next model point starts a new stroke
    this.points = 0;
    this.highlight = highlight;
    this.sketch = null;
    this.figure = document.createElement("figure");
    this.figure.className = "result";
    this.figure.dataset.state = "drawing";
    this.figure.dataset.modelPoints = "0";
    this.canvas = document.createElement("canvas");
    const caption = document.createElement("figcaption");
    this.label = document.createElement("span");
    this.label.className = "label";
    this.label.textContent = "…";
    caption.append(this.label);
    const button = (text, title, action) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = text;
      b.title = title;
      b.disabled = true;
      b.addEventListener("click", action);
      caption.append(b);
      return b;
    };
    this.buttons = [
      ...["svg", "png"].map((f) =>
        button(f.toUpperCase(), `Download as ${f.toUpperCase()}`, () => this.download(f))),
      button("Edit", "Put this drawing on the pad, to rub parts out and heal it", () =>
        this.toPad()),
    ];
    this.figure.append(this.canvas, caption);
    $("results").append(this.figure);
    this.ctx = fitCanvas(this.canvas);
    this.scheduled = false;
    this.draw();
  }

  add(x, y, pen) {
    if (this.penUp) this.model.push([]);
    this.model[this.model.length - 1].push([x, y]);
    this.penUp = pen === 1;
    this.points += 1;
    this.figure.dataset.modelPoints = String(this.points);
    if (!this.scheduled) {
      this.scheduled = true;
      requestAnimationFrame(() => {
        this.scheduled = false;
        this.draw();
      });
    }
  }

  draw() {
    const all = [...this.user, ...this.model].flat();
    const size = this.canvas.getBoundingClientRect().width;
    this.ctx.clearRect(0, 0, size, size);
    if (!all.length) return;
    const toPixel = fitting(all, size);
    this.ctx.lineWidth = 2;
    this.ctx.lineCap = this.ctx.lineJoin = "round";
    for (const s of this.user) drawStroke(this.ctx, s, this.userColor, toPixel);
    for (const s of this.model) drawStroke(this.ctx, s, MODEL_COLOR, toPixel);
  }

  finish(sketch) {
    this.sketch = sketch;
    this.figure.dataset.state = "done";
    const added = this.user.length && !this.points ? " (nothing to add)" : "";
    this.label.textContent = sketch.label.replaceAll("_", " ") + added;
    for (const b of this.buttons) b.disabled = false;
    this.draw();
  }

  fail() {
    this.figure.dataset.state = "error";
    this.label.textContent = "failed";
  }

  // The finished drawing on the pad in place of the user's (Undo brings theirs back), fitted
  // to the pad as to the panel.
  toPad() {
    const toPixel = fitting(this.sketch.strokes.flat(), pad.getBoundingClientRect().width);
    remember();
    const onPad = (p) => toPixel(p).map((v) => +v.toFixed(1)); // as padPoint rounds
    state.strokes = this.sketch.strokes.map((s) => s.map(onPad));
    redrawPad();
    status("The drawing is on the pad: rub parts out with the eraser, then press Heal.");
  }

  async download(format) {
    const body = {
      sketch: { stroke3: this.sketch.stroke3 },
      format,
      size: 512,
      highlight_from: this.highlight ? this.sketch.prefix_points : null,
    };
    const response = await fetch("/api/render", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      status(await problem(response), true);
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = `${this.sketch.label || "sketch"}.${format}`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }
}

async function problem(response) {
  try {
    const body = await response.json();
    return `${response.status}: ${body.detail}`;
  } catch {
    return `${response.status}: ${response.statusText}`;
  }
}

// ----- talking to the model -----
function request(operation) {
  const cls = $("cls").value;
  const count = Math.max(1, Math.min(+$("count").value || 1, state.limits?.max_count ?? 8));
  const temperature = +$("temperature").value;
  const model = state.model || undefined; // left out of the JSON: the server's own model
  if (operation === "draw") return { class: cls, count: 1, temperature, model }; // "Draw one"
  const sketch = { strokes: state.strokes };
  if (operation === "complete" || operation === "heal") {
    return { sketch, class: cls, count, temperature, model };
  }
  const classes = Array(count).fill(cls);
  return { sketch, classes, temperature, class_pull: +$("pull").value, model };
}

async function run(operation) {
  if (operation !== "draw" && !state.strokes.length) {
    status("Draw something first.", true);
    return;
  }
  state.controller?.abort();
  const controller = new AbortController();
  state.controller = controller;
  const body = request(operation);
  $("results").replaceChildren();
  const count = operation === "translate" ? body.classes.length : body.count;
  // A completion goes on from the user's strokes; a healed drawing lies over them, redrawn.
  const under = { complete: USER_COLOR, heal: UNDER_COLOR }[operation];
  const userStrokes = under ? state.strokes.map((s) => s.slice()) : [];
  const panels = Array.from(
    { length: count },
    () => new Panel(userStrokes, operation === "complete", under),
  );
  const started = performance.now();
  let points = 0;
  status("The model is drawing…");
  try {
    const response = await fetch(`/api/${operation}/stream`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) throw new Error(await problem(response));
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      const lines = buffer.split("\n");
      buffer = lines.pop();
      for (const line of lines.filter(Boolean)) {
        const event = JSON.parse(line);
        if (event.type === "start") {
          event.labels.forEach((l, i) => (panels[i].label.textContent = `${l.replaceAll("_", " ")}…`));
        } else if (event.type === "points") {
          for (const [row, x, y, pen] of event.points) panels[row].add(x, y, pen);
          points += event.points.length;
          status(`The model is drawing… ${points} points`);
        } else if (event.type === "done") {
          event.sketches.forEach((s, i) => panels[i].finish(s));
          const seconds = ((performance.now() - started) / 1000).toFixed(1);
          status(`Done: ${points} points in ${seconds} s.`);
        } else if (event.type === "error") {
          throw new Error(event.detail);
        }
      }
    }
  } catch (error) {
    if (controller.signal.aborted) return;
    panels.forEach((p) => p.fail());
    status(`The model could not draw: ${error.message}`, true);
  }
}

$("finish").addEventListener("click", () => run("complete"));
$("redraw").addEventListener("click", () => run("translate"));
$("heal").addEventListener("click", () => run("heal"));
$("draw-one").addEventListener("click", () => run("draw"));

$("temperature").addEventListener("input", () => {
  $("temperature-value").textContent = (+$("temperature").value).toFixed(2);
});
$("pull").addEventListener("input", () => {
  $("pull-value").textContent = (+$("pull").value).toFixed(1);
});
$("cls").addEventListener("change", () => {
  document.querySelector(".cls-name").textContent = $("cls").selectedOptions[0].textContent;
});

// The model's classes and limits on the page; `body[data-model]` says which model they are of.
function showModel(info) {
  state.limits = info.limits;
  $("count").max = info.limits.max_count;
  $("temperature").min = Math.max(info.limits.min_temperature, 0.05);
  $("temperature").max = Math.min(info.limits.max_temperature, 1.5);
  $("temperature").value = info.temperature; // each model starts at its own
  $("temperature").dispatchEvent(new Event("input"));
  $("model").textContent = `${info.source}: ${info.classes.length} classes`;
  $("cls").replaceChildren(
    ...info.classes.map((c) => new Option(c.replaceAll("_", " "), c)),
  );
  $("cls").dispatchEvent(new Event("change"));
  state.hasEncoder = info.has_encoder;
  for (const id of ENCODER_ACTIONS) {
    $(id).title = info.has_encoder
      ? $(id).dataset.help ?? ""
      : `This model has no encoder (Google's models draw and finish only): it cannot ${id}.`;
  }
  document.body.dataset.model = info.source;
}

// The buttons, off while a model loads; "Redraw as" and "Heal" only for a model with an encoder.
function setBusy(busy) {
  for (const button of document.querySelectorAll(".actions button")) button.disabled = busy;
  if (!state.hasEncoder) for (const id of ENCODER_ACTIONS) $(id).disabled = true;
}

async function fetchModel(model) {
  const query = model ? `?model=${encodeURIComponent(model)}` : "";
  const response = await fetch(`/api/model${query}`);
  if (!response.ok) throw new Error(await problem(response));
  return response.json();
}

// The choice of model: the server's own, then Google's (the server downloads one on first use).
async function listModels() {
  const response = await fetch("/api/models");
  if (!response.ok) throw new Error(await problem(response));
  const choices = await response.json();
  const cached = new Set(choices.cached);
  const google = document.createElement("optgroup");
  google.label = "Google's Sketch-RNN models (draw and finish only)";
  google.append(
    ...choices.google.map((m) => {
      const name = m.replace(/^google:/, "").replaceAll("_", " ");
      return new Option(cached.has(m) ? name : `${name} (download)`, m);
    }),
  );
  $("model-choice").replaceChildren(new Option(choices.default, ""), google);
}

$("model-choice").addEventListener("change", async () => {
  const model = $("model-choice").value;
  setBusy(true);
  status(`Loading ${model || "the server's model"}…`);
  try {
    showModel(await fetchModel(model));
    state.model = model;
    const option = $("model-choice").selectedOptions[0];
    option.textContent = option.textContent.replace(/ \(download\)$/, "");
    status(`Drawing with ${model || "the server's model"}.`);
  } catch (error) {
    $("model-choice").value = state.model;
    status(`Cannot load that model: ${error.message}`, true);
  } finally {
    setBusy(false);
  }
});

async function start() {
  fitCanvas(pad);
  redrawPad();
  try {
    showModel(await fetchModel(""));
    await listModels();
  } catch (error) {
    status(`Cannot reach the model: ${error.message}`, true);
    return;
  }
  setBusy(false);
  document.body.dataset.ready = "true";
}

window.addEventListener("resize", () => {
  fitCanvas(pad);
  redrawPad();
});
start();
