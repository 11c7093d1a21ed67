// aisketcher's page: draw on the pad, and watch the model finish, redraw or draw a sketch.
// Strokes are lists of [x, y] points in the pad's CSS pixels; the server maps its answers back to
// that frame. Results stream as NDJSON lines (see /api/openapi.json).
"use strict";

const MODEL_COLOR = "#d62728";
const USER_COLOR = "#111";
const MIN_STEP = 1.5; // pad pixels between recorded points: finer detail is simplified away anyway

const $ = (id) => document.getElementById(id);
const pad = $("pad");
// model: the model chosen on the page, "" for the server's own (requests then name none).
const state = {
  strokes: [], current: null, limits: null, controller: null, model: "", hasEncoder: true,
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

pad.addEventListener("pointerdown", (event) => {
  if (event.pointerType === "mouse" && event.button !== 0) return;
  if (state.limits && state.strokes.length >= state.limits.max_strokes) {
    status("That is as many strokes as the model takes.", true);
    return;
  }
  pad.setPointerCapture(event.pointerId);
  state.current = [padPoint(event)];
  state.strokes.push(state.current);
  redrawPad();
});

pad.addEventListener("pointermove", (event) => {
  if (!state.current) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) addPoint(padPoint(e));
  redrawPad();
});

for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => {
    state.current = null;
  });
}

$("undo").addEventListener("click", () => {
  state.strokes.pop();
  redrawPad();
});
$("clear").addEventListener("click", () => {
  state.strokes = [];
  redrawPad();
});
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key === "z") {
    event.preventDefault();
    $("undo").click();
  }
});

// ----- result panels -----
class Panel {
  constructor(userStrokes, highlight) {
    this.user = userStrokes; // drawn in black, for "finish my drawing"
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
    this.buttons = ["svg", "png"].map((format) => {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = format.toUpperCase();
      button.title = `Download as ${format.toUpperCase()}`;
      button.disabled = true;
      button.addEventListener("click", () => this.download(format));
      caption.append(button);
      return button;
    });
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
    const xs = all.map((p) => p[0]);
    const ys = all.map((p) => p[1]);
    const [minX, maxX, minY, maxY] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const extent = Math.max(maxX - minX, maxY - minY, 1e-6);
    const scale = (size * 0.9) / extent;
    const toPixel = ([x, y]) => [
      size / 2 + (x - (minX + maxX) / 2) * scale,
      size / 2 + (y - (minY + maxY) / 2) * scale,
    ];
    this.ctx.lineWidth = 2;
    this.ctx.lineCap = this.ctx.lineJoin = "round";
    for (const s of this.user) drawStroke(this.ctx, s, USER_COLOR, toPixel);
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
  if (operation === "complete") return { sketch, class: cls, count, temperature, model };
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
  const userStrokes = operation === "complete" ? state.strokes.map((s) => s.slice()) : [];
  const panels = Array.from({ length: count }, () => new Panel(userStrokes, operation === "complete"));
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
  $("model").textContent = `${info.source}: ${info.classes.length} classes`;
  $("cls").replaceChildren(
    ...info.classes.map((c) => new Option(c.replaceAll("_", " "), c)),
  );
  $("cls").dispatchEvent(new Event("change"));
  state.hasEncoder = info.has_encoder;
  $("redraw").title = info.has_encoder
    ? ""
    : "This model has no encoder (Google's models draw and finish only): it cannot redraw.";
  document.body.dataset.model = info.source;
}

// The buttons, off while a model loads; "Redraw as" only for a model with an encoder.
function setBusy(busy) {
  for (const button of document.querySelectorAll(".actions button")) button.disabled = busy;
  if (!state.hasEncoder) $("redraw").disabled = true;
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
