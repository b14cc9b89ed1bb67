// The playground: choices -> GET /api/playground/train (server-sent events) -> boundary, loss, accuracy.
// The stream is read with fetch, not EventSource: fetch can send the token, reads a refusal's
// sentence, and its AbortController closes the connection, which stops the training on the server.
"use strict";

const plot = $("plot").getContext("2d");
const SIZE = 400;
let extent = 1.5, points = null, training = null, losses = [];

function fail(message) { $("error").textContent = message || ""; }
const toPx = (v) => ((v + extent) / (2 * extent)) * SIZE;

function choices() {
  return { dataset: $("dataset").value, noise: $("noise").value, n: $("n").value, hidden: $("hidden").value.trim(),
           activation: $("activation").value, optimizer: $("optimizer").value, lr: $("lr").value,
           batch_size: $("batch").value, epochs: $("epochs").value };
}

async function init() {
  const opts = await (await api("/api/playground/options")).json();
  extent = opts.extent;
  const fill = (id, values, chosen) => { $(id).replaceChildren(...values.map((v) => el("option", { value: v, selected: v === chosen }, v))); };
  fill("dataset", opts.datasets, opts.defaults.dataset);
  fill("activation", opts.activations, opts.defaults.activation);
  fill("optimizer", opts.optimizers, opts.defaults.optimizer);
  for (const id of ["dataset", "noise", "n"]) $(id).addEventListener("change", () => loadPoints().catch((e) => fail(e.message)));
  $("noise").oninput = () => { $("noise-value").textContent = Number($("noise").value).toFixed(2); };
  $("n").oninput = () => { $("n-value").textContent = $("n").value; };
  $("train").onclick = train;
  $("logistic").onclick = () => { $("hidden").value = ""; train(); };
  await loadPoints();
}

async function loadPoints() {
  const c = choices();
  const query = new URLSearchParams({ dataset: c.dataset, n: c.n, noise: c.noise });
  points = await (await api(`/api/playground/data?${query}`)).json();
  fail("");
  draw(null);
}

function draw(grid, size) {
  plot.fillStyle = "#fff";
  plot.fillRect(0, 0, SIZE, SIZE);
  if (grid) {
    const cell = SIZE / size;
    for (let i = 0; i < size; i++) for (let j = 0; j < size; j++) {
      const p = grid[i * size + j];   // probability of class 1 (orange); row 0 is the top
      const a = Math.abs(p - 0.5) * 1.4;
      plot.fillStyle = p > 0.5 ? `rgba(245,147,34,${a})` : `rgba(8,119,189,${a})`;
      plot.fillRect(j * cell, i * cell, cell + 0.5, cell + 0.5);
    }
  }
  if (!points) return;
  const dot = ([x, y, c], test) => {
    plot.beginPath();
    plot.arc(toPx(x), toPx(-y), 3.2, 0, 2 * Math.PI);
    plot.fillStyle = c ? "#f59322" : "#0877bd";
    plot.strokeStyle = test ? "#111" : "#fff";
    plot.lineWidth = test ? 1.2 : 0.8;
    plot.fill(); plot.stroke();
  };
  points.train.forEach((p) => dot(p, false));
  points.test.forEach((p) => dot(p, true));
}

function drawLoss() {
  const g = $("loss").getContext("2d"), w = 300, h = 120;
  g.clearRect(0, 0, w, h);
  if (losses.length < 2) return;
  const top = Math.max(...losses.flatMap((l) => [l.train, l.test]), 0.01);
  const line = (key, dash) => {
    g.beginPath(); g.setLineDash(dash); g.strokeStyle = "#2563eb"; g.lineWidth = 1.5;
    losses.forEach((l, k) => { const x = (k / (losses.length - 1)) * w, y = h - (l[key] / top) * (h - 4); k ? g.lineTo(x, y) : g.moveTo(x, y); });
    g.stroke();
  };
  line("train", []); line("test", [4, 3]);
}

function panel(frame) {
  const c = frame.chosen;
  const model = c.hidden.length ? `${c.hidden.length} hidden layer(s) of ${c.hidden.join(", ")} neurons, ${c.activation}` : "logistic regression (no hidden layer)";
  $("chosen").replaceChildren(el("ul", {},
    el("li", {}, `model: ${model}`),
    el("li", {}, `optimizer ${c.optimizer}, learning rate ${c.lr}, batch size ${c.batch_size}, ${c.epochs} epochs`),
    el("li", {}, `data: ${c.dataset}, ${c.n} points, noise ${c.noise}`)));
  $("learned").replaceChildren(
    el("div", {}, `${frame.learned_count} numbers found by gradient descent:`),
    el("ul", {}, frame.learned.map((l) => el("li", {},
      `layer ${l.layer}: ${l.neurons}×${l.inputs} weights + ${l.neurons} biases`,
      l.count <= 12 ? [" ", el("code", {}, `w=${JSON.stringify(l.weights)} b=${JSON.stringify(l.biases)}`)] : []))));
}

function show(f) {
  draw(f.grid, Math.round(Math.sqrt(f.grid.length)));
  losses.push({ train: f.train_loss, test: f.test_loss });
  drawLoss();
  $("epoch").textContent = f.epoch;
  $("accuracy").textContent = (100 * f.test_accuracy).toFixed(1) + "%";
  $("train-accuracy").textContent = (100 * f.train_accuracy).toFixed(1) + "%";
  $("train-loss").textContent = f.train_loss.toFixed(3);
  $("test-loss").textContent = f.test_loss.toFixed(3);
  if (f.done) {
    panel(f);
    $("status").textContent = "done";
    $("accuracy").dataset.done = "1";
  }
}

// Each event is `data: {json}` and a blank line; a chunk of the stream may end inside one.
async function readFrames(res, onFrame) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffered += value;
    const events = buffered.split("\n\n");
    buffered = events.pop();
    for (const event of events) if (event.startsWith("data: ")) onFrame(JSON.parse(event.slice(6)));
  }
}

async function train() {
  fail("");
  if (training) training.abort();   // the server stops the old training when its connection closes
  const mine = training = new AbortController();
  losses = [];
  delete $("accuracy").dataset.done;
  $("train").disabled = true;
  try {
    const res = await api(`/api/playground/train?${new URLSearchParams(choices())}`, { signal: mine.signal });
    await loadPoints();
    $("status").textContent = "training…";
    await readFrames(res, show);
  } catch (e) {
    if (e.name !== "AbortError") { fail(e.message); $("status").textContent = ""; }
  } finally {
    if (training === mine) { training = null; $("train").disabled = false; }
  }
}

init().catch((e) => fail(e.message));
