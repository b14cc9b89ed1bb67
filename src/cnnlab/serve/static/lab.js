// The lab page: one image (drawn or uploaded) goes to /api/predict, /api/explain, /api/attack
// and /api/features; the explorer shows the lecture's convolution or the served model's maps.
"use strict";

const $ = (id) => document.getElementById(id);
let image = null;        // the current input as a Blob (PNG from the canvas, or the uploaded file)
let runName = null;      // null = the run the server was started on

function fail(message) { $("error").textContent = message || ""; }

async function call(path, fields = {}, withImage = true) {
  const url = new URL(path, location.origin);
  if (runName) url.searchParams.set("run", runName);
  const form = new FormData();
  if (withImage) form.append("file", image, "input.png");
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  const res = await fetch(url, { method: "POST", body: form });
  if (!res.ok) {
    const doc = await res.json().catch(() => ({ error: res.statusText }));
    throw new Error(doc.error || res.statusText);
  }
  return res;
}

async function getJson(path) {
  const url = new URL(path, location.origin);
  if (runName) url.searchParams.set("run", runName);
  const res = await fetch(url);
  const doc = await res.json();
  if (!res.ok) throw new Error(doc.error);
  return doc;
}

const pct = (p) => (100 * p).toFixed(1) + "%";

// ---- the model and the run selector ------------------------------------------------------
async function loadModel() {
  const m = await getJson("/api/model");
  $("model-info").textContent = `${m.model} on ${m.data}, input ${m.input_shape.join("×")}, ` +
    `${m.summary.params.toLocaleString()} learned parameters` +
    (m.test_accuracy != null ? `, test accuracy ${pct(m.test_accuracy)}` : "");
}

async function loadRuns() {
  const doc = await (await fetch("/api/runs")).json();
  const select = $("run");
  select.innerHTML = doc.runs.map((r) => `<option ${r === doc.default ? "selected" : ""}>${r}</option>`).join("");
  select.onchange = async () => { runName = select.value; await loadModel().catch((e) => fail(e.message)); analyse(); };
}

// ---- drawing and uploading ---------------------------------------------------------------
const canvas = $("draw");
const pen = canvas.getContext("2d");
function clearCanvas() { pen.fillStyle = "#000"; pen.fillRect(0, 0, canvas.width, canvas.height); }
clearCanvas();
let drawing = false;
canvas.addEventListener("pointerdown", (e) => { drawing = true; pen.beginPath(); pen.moveTo(e.offsetX, e.offsetY); });
canvas.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  pen.lineWidth = 22; pen.lineCap = "round"; pen.strokeStyle = "#fff";
  pen.lineTo(e.offsetX, e.offsetY); pen.stroke();
});
canvas.addEventListener("pointerup", () => { drawing = false; canvas.toBlob((b) => { image = b; analyse(); }, "image/png"); });
$("clear").onclick = () => { clearCanvas(); image = null; };
$("upload").onchange = (e) => {
  const file = e.target.files[0];
  if (!file) return;
  image = file;
  const img = new Image();
  img.onload = () => { clearCanvas(); pen.drawImage(img, 0, 0, canvas.width, canvas.height); };
  img.src = URL.createObjectURL(file);
  analyse();
};

// ---- prediction, Grad-CAM, attack --------------------------------------------------------
function bars(probabilities, classes) {
  const best = probabilities.indexOf(Math.max(...probabilities));
  $("bars").innerHTML = probabilities.map((p, i) =>
    `<span>${classes[i]}</span><div class="bar ${i === best ? "top" : ""}" style="width:${Math.max(1, 100 * p)}%"></div><span class="muted">${pct(p)}</span>`
  ).join("");
}

async function predict() {
  const doc = await (await call("/api/predict")).json();
  $("top-class").textContent = doc.top[0].class;
  $("top-prob").textContent = pct(doc.top[0].probability);
  $("seen").src = doc.seen;
  bars(doc.probabilities, doc.classes);
}

async function explain() {
  const res = await call("/api/explain");
  $("gradcam").src = URL.createObjectURL(await res.blob());
  $("gradcam-target").textContent = "class " + res.headers.get("X-Cnnlab-Target");
}

let attackSeq = 0;
async function attack() {
  const seq = ++attackSeq;   // a slider moves faster than the server answers: keep the newest
  const eps = $("eps").value;
  const doc = await (await call("/api/attack", { eps, method: $("method").value })).json();
  if (seq !== attackSeq) return;
  $("adv-image").src = doc.image;
  $("adv-noise").src = doc.noise;
  $("adv-class").textContent = doc.adversarial[0].class;
  $("adv-prob").textContent = `${pct(doc.adversarial[0].probability)} at ε = ${Number(doc.eps).toFixed(2)}`;
  $("adv-flipped").innerHTML = doc.flipped ? `<span class="flipped">flipped from ${doc.label}</span>` : "same as the clean image";
  $("adv-class").dataset.eps = doc.eps;
}

async function analyse() {
  if (!image) return;
  fail("");
  try {
    await predict();
    await Promise.all([explain(), attack(), source() === "model" ? modelExplorer() : null]);
  } catch (e) { fail(e.message); }
}

$("eps").oninput = () => { $("eps-value").textContent = Number($("eps").value).toFixed(2); };
$("eps").onchange = () => { if (image) attack().catch((e) => fail(e.message)); };
$("method").onchange = $("eps").onchange;

// ---- the CNN explorer --------------------------------------------------------------------
const source = () => document.querySelector("input[name=source]:checked").value;
document.querySelectorAll("input[name=source]").forEach((r) => r.onchange = () => {
  $("cell").innerHTML = "";
  (source() === "lecture" ? lectureExplorer() : modelExplorer()).catch((e) => fail(e.message));
});

// One map (H x W numbers) as a canvas: red positive, blue negative, scaled by `scale`.
function mapCanvas(map, scale, absmax, numbers = false) {
  const h = map.length, w = map[0].length;
  const c = document.createElement("canvas");
  c.width = w * scale; c.height = h * scale;
  const g = c.getContext("2d");
  for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) {
    const v = absmax > 0 ? map[i][j] / absmax : 0;
    const a = Math.min(1, Math.abs(v));
    g.fillStyle = v >= 0 ? `rgba(220,38,38,${a})` : `rgba(37,99,235,${a})`;
    g.fillRect(j * scale, i * scale, scale, scale);
    if (numbers) {
      g.fillStyle = "#111"; g.font = `${Math.floor(scale / 3)}px monospace`; g.textAlign = "center"; g.textBaseline = "middle";
      g.fillText(String(map[i][j]), j * scale + scale / 2, i * scale + scale / 2);
    }
  }
  c.dataset.scale = scale;
  return c;
}

function column(title, canvases) {
  const div = document.createElement("div");
  div.className = "column";
  div.innerHTML = `<div class="title">${title}</div>`;
  canvases.forEach((c) => div.appendChild(c));
  return div;
}

const absmax = (maps) => Math.max(...maps.flat(2).map(Math.abs));

function clickable(c, onCell) {
  c.classList.add("clickable");
  c.addEventListener("click", (e) => {
    const s = Number(c.dataset.scale);
    onCell(Math.floor(e.offsetY / s), Math.floor(e.offsetX / s));
  });
}

async function lectureExplorer() {
  const ex = await getJson("/api/explorer/lecture");
  $("explorer-hint").textContent = `The lecture's convolution: a 5×5 RGB image, zero padding ${ex.padding}, ` +
    `one 3×3 kernel per channel, bias ${ex.bias}, stride ${ex.stride}. Click a cell of the output.`;
  const cols = $("columns");
  cols.innerHTML = "";
  const inputs = ex.image.map((m) => mapCanvas(m, 36, 255, true));
  cols.appendChild(column("input R, G, B (0–255)", inputs));
  cols.appendChild(column("kernels K_R, K_G, K_B", ex.kernel.map((k) => mapCanvas(k, 36, 1, true))));
  const out = mapCanvas(ex.output[0], 36, absmax(ex.output), true);
  out.id = "conv-output";
  clickable(out, async (i, j) => showCell(await getJson(`/api/explorer/lecture/cell?i=${i}&j=${j}`)));
  cols.appendChild(column("convolution output (click a cell)", [out]));
}

async function modelExplorer() {
  if (!image) { $("columns").innerHTML = "<p class='muted'>Draw or upload an image first.</p>"; return; }
  const doc = await (await call("/api/features")).json();
  $("explorer-hint").textContent = `Each column is a layer's feature maps (first ${16} per layer; red positive, blue negative). ` +
    `Click a pixel of a map of ${doc.first_conv} (the first convolution) to see how it was computed.`;
  const cols = $("columns");
  cols.innerHTML = "";
  for (const col of doc.columns) {
    const m = absmax(col.maps);
    const scale = Math.max(1, Math.floor(84 / col.shape[1]));
    const canvases = col.maps.map((map, k) => {
      const c = mapCanvas(map, scale, m);
      if (col.first_conv) {
        c.dataset.channel = k;
        clickable(c, async (i, j) => showCell(await (await call("/api/explorer/cell", { channel: k, i, j })).json()));
      }
      return c;
    });
    cols.appendChild(column(`${col.name}<br><span class="muted">${col.type} ${col.shape.join("×")}</span>`, canvases));
  }
  const probs = doc.probabilities.map((p, i) => `${doc.classes[i]} ${pct(p)}`).join("<br>");
  const last = document.createElement("div");
  last.className = "column";
  last.innerHTML = `<div class="title">output<br><span class="muted">softmax</span></div><div class="muted">${probs}</div>`;
  cols.appendChild(last);
}

const fmt = (v) => (Number.isInteger(v) ? String(v) : v.toFixed(3));
const table = (rows) => `<table class="grid">${rows.map((r) => `<tr>${r.map((v) => `<td>${fmt(v)}</td>`).join("")}</tr>`).join("")}</table>`;

function showCell(d) {
  const parts = d.channels.map((name, c) => `
    <div><b>channel ${name}</b>
      <div class="channel">
        <div>window<br>${table(d.window[c])}</div>
        <div>kernel<br>${table(d.kernel[c])}</div>
        <div>products<br>${table(d.products[c])}</div>
      </div>
      <div class="sum">sum = <span class="channel-sum">${fmt(d.sums[c])}</span></div>
    </div>`).join("");
  const terms = d.sums.map(fmt).join(" + ").replaceAll("+ -", "− ");
  const where = d.layer ? `${d.layer}, output channel ${d.channel}, ` : "";
  $("cell").innerHTML = `<h3>${where}cell (${d.cell[0]}, ${d.cell[1]})</h3><div class="detail">${parts}</div>
    <div class="sum">${terms} + ${fmt(d.bias)} (bias) = <span id="cell-total" class="total">${fmt(d.total)}</span></div>` +
    (d.conv2d != null ? `<div class="muted">PyTorch's conv2d gives ${fmt(d.conv2d)} at this cell.</div>` : "");
}

loadRuns().then(loadModel).then(lectureExplorer).catch((e) => fail(e.message));
