// The playground: choices -> GET /api/playground/train (server-sent events) -> boundary, loss, accuracy.
"use strict";

const $ = (id) => document.getElementById(id);
const plot = $("plot").getContext("2d");
const SIZE = 400;
let extent = 1.5, points = null, stream = null, losses = [];

function fail(message) { $("error").textContent = message || ""; }
const toPx = (v) => ((v + extent) / (2 * extent)) * SIZE;

function choices() {
  return { dataset: $("dataset").value, noise: $("noise").value, n: $("n").value, hidden: $("hidden").value.trim(),
           activation: $("activation").value, optimizer: $("optimizer").value, lr: $("lr").value,
           batch_size: $("batch").value, epochs: $("epochs").value };
}

async function init() {
  const opts = await (await fetch("/api/playground/options")).json();
  extent = opts.extent;
  const fill = (id, values, chosen) => { $(id).innerHTML = values.map((v) => `<option ${v === chosen ? "selected" : ""}>${v}</option>`).join(""); };
  fill("dataset", opts.datasets, opts.defaults.dataset);
  fill("activation", opts.activations, opts.defaults.activation);
  fill("optimizer", opts.optimizers, opts.defaults.optimizer);
  for (const id of ["dataset", "noise", "n"]) $(id).addEventListener("change", loadPoints);
  $("noise").oninput = () => { $("noise-value").textContent = Number($("noise").value).toFixed(2); };
  $("n").oninput = () => { $("n-value").textContent = $("n").value; };
  $("train").onclick = train;
  $("logistic").onclick = () => { $("hidden").value = ""; train(); };
  await loadPoints();
}

async function loadPoints() {
  const c = choices();
  const res = await fetch(`/api/playground/data?dataset=${c.dataset}&n=${c.n}&noise=${c.noise}`);
  const doc = await res.json();
  if (!res.ok) { fail(doc.error); return; }
  fail("");
  points = doc;
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
  $("chosen").innerHTML = `<ul><li>model: ${model}</li><li>optimizer ${c.optimizer}, learning rate ${c.lr}, batch size ${c.batch_size}, ${c.epochs} epochs</li>` +
    `<li>data: ${c.dataset}, ${c.n} points, noise ${c.noise}</li></ul>`;
  $("learned").innerHTML = `<div>${frame.learned_count} numbers found by gradient descent:</div><ul>` + frame.learned.map((l) =>
    `<li>layer ${l.layer}: ${l.neurons}×${l.inputs} weights + ${l.neurons} biases` +
    (l.count <= 12 ? ` <code>w=${JSON.stringify(l.weights)} b=${JSON.stringify(l.biases)}</code>` : "") + "</li>").join("") + "</ul>";
}

async function train() {
  fail("");
  if (stream) stream.close();
  const params = new URLSearchParams(choices());
  // A bad choice answers 400 with a sentence; EventSource cannot read it, so ask once first.
  const check = await fetch(`/api/playground/train?${params}&epochs=1`);
  if (!check.ok) { fail((await check.json()).error); return; }
  await check.text();
  await loadPoints();
  losses = [];
  delete $("accuracy").dataset.done;
  $("status").textContent = "training…";
  $("train").disabled = true;
  stream = new EventSource(`/api/playground/train?${params}`);
  stream.onmessage = (e) => {
    const f = JSON.parse(e.data);
    draw(f.grid, Math.round(Math.sqrt(f.grid.length)));
    losses.push({ train: f.train_loss, test: f.test_loss });
    drawLoss();
    $("epoch").textContent = f.epoch;
    $("accuracy").textContent = (100 * f.test_accuracy).toFixed(1) + "%";
    $("train-accuracy").textContent = (100 * f.train_accuracy).toFixed(1) + "%";
    $("train-loss").textContent = f.train_loss.toFixed(3);
    $("test-loss").textContent = f.test_loss.toFixed(3);
    if (f.done) {
      stream.close(); stream = null;
      panel(f);
      $("train").disabled = false;
      $("status").textContent = "done";
      $("accuracy").dataset.done = "1";
    }
  };
  stream.onerror = () => { if (stream) { stream.close(); stream = null; $("train").disabled = false; fail("the training stream was interrupted; is the server still running?"); } };
}

init().catch((e) => fail(e.message));
