// The lab page: one image (drawn or uploaded) goes to /api/predict, /api/explain, /api/attack
// and /api/features (a detection or segmentation run's to its own endpoint: where.js); the
// explorer shows the lecture's convolution or the served model's maps.
// Every name from the server (runs, classes, layers) is put in the page as text (common.js).
"use strict";

let image = null;        // the current input as a Blob (PNG from the canvas, or the uploaded file)
let runName = null;      // null = the run the server was started on

function fail(message) { $("error").textContent = message || ""; }

function withRun(path, query = {}) {
  const url = new URL(path, location.origin);
  if (runName) url.searchParams.set("run", runName);
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
  return url;
}

// POST the current image (multipart field `file`) with form fields, for the named run.
async function call(path, fields = {}, query = {}) {
  const form = new FormData();
  form.append("file", image, "input.png");
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  return api(withRun(path, query), { method: "POST", body: form });
}

const getJson = async (path) => (await api(withRun(path))).json();
const pct = (p) => (100 * p).toFixed(1) + "%";

// ---- the model and the run selector ------------------------------------------------------
async function loadModel() {
  const m = await getJson("/api/model");
  $("model-info").textContent = `${m.model} on ${m.data}, input ${m.input_shape.join("×")}, ` +
    `${m.summary.params.toLocaleString()} learned parameters` +
    (m.test_accuracy != null ? `, test accuracy ${pct(m.test_accuracy)}` : "");
  showTask(m.task);   // where.js: a detection or segmentation run gets its own card
}

async function loadRuns() {
  const doc = await (await api("/api/runs")).json();
  const select = $("run");
  select.replaceChildren(...doc.runs.map((r) => el("option", { value: r, selected: r === doc.default }, r)));
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
  $("bars").replaceChildren(...probabilities.flatMap((p, i) => [
    el("span", {}, classes[i]),
    el("div", { className: i === best ? "bar top" : "bar", style: `width:${Math.max(1, 100 * p)}%` }),
    el("span", { className: "muted" }, pct(p)),
  ]));
}

async function predict() {
  const doc = await (await call("/api/predict", {}, { seen: "true" })).json();
  $("top-class").textContent = doc.top[0].class;
  $("top-prob").textContent = pct(doc.top[0].probability);
  $("seen").src = doc.seen;
  bars(doc.probabilities, doc.classes);
}

async function explain() {
  const res = await call("/api/explain");
  $("gradcam").src = URL.createObjectURL(await res.blob());
  $("gradcam-target").textContent = "class " + decodeURIComponent(res.headers.get("X-Cnnlab-Target"));
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
  $("adv-flipped").replaceChildren(doc.flipped ? el("span", { className: "flipped" }, `flipped from ${doc.label}`) : "same as the clean image");
  $("adv-class").dataset.eps = doc.eps;
}

async function analyse() {
  if (!image) return;
  fail("");
  try {
    if (WHERE[servedTask]) {   // where.js: boxes or a mask instead of classes
      await Promise.all([where(), source() === "model" ? modelExplorer() : null]);
      return;
    }
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
  $("cell").replaceChildren();
  (source() === "lecture" ? lectureExplorer() : modelExplorer()).catch((e) => fail(e.message));
});

// One map (H x W numbers) as a canvas: red positive, blue negative, scaled by `scale`.
function mapCanvas(map, scale, absmax, numbers = false) {
  const h = map.length, w = map[0].length;
  const c = el("canvas", { width: w * scale, height: h * scale });
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

// A column of the explorer: a title (a line, and a muted second line) over its canvases.
const column = (title, subtitle, children) =>
  el("div", { className: "column" }, el("div", { className: "title" }, title, subtitle ? [el("br"), el("span", { className: "muted" }, subtitle)] : []), children);

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
  const out = mapCanvas(ex.output[0], 36, absmax(ex.output), true);
  out.id = "conv-output";
  clickable(out, async (i, j) => showCell(await getJson(`/api/explorer/lecture/cell?i=${i}&j=${j}`)));
  $("columns").replaceChildren(
    column("input R, G, B (0–255)", null, ex.image.map((m) => mapCanvas(m, 36, 255, true))),
    column("kernels K_R, K_G, K_B", null, ex.kernel.map((k) => mapCanvas(k, 36, 1, true))),
    column("convolution output (click a cell)", null, [out]),
  );
}

async function modelExplorer() {
  if (!image) { $("columns").replaceChildren(el("p", { className: "muted" }, "Draw or upload an image first.")); return; }
  const doc = await (await call("/api/features")).json();
  $("explorer-hint").textContent = `Each column is a layer's feature maps (at most 16 per layer; red positive, blue negative). ` +
    `Click a pixel of a map of ${doc.first_conv} (the first convolution) to see how it was computed.` +
    (doc.truncated ? " Later layers are left out: the model's maps are too many to send." : "");
  const columns = doc.columns.map((col) => {
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
    return column(col.name, `${col.type} ${col.shape.join("×")}`, canvases);
  });
  const probs = (doc.probabilities || []).flatMap((p, i) => [i ? el("br") : null, `${doc.classes[i]} ${pct(p)}`]);
  columns.push(column("output", "softmax", [el("div", { className: "muted" }, probs)]));
  $("columns").replaceChildren(...columns);
}

const fmt = (v) => (Number.isInteger(v) ? String(v) : v.toFixed(3));
const table = (rows) => el("table", { className: "grid" }, rows.map((r) => el("tr", {}, r.map((v) => el("td", {}, fmt(v))))));

function showCell(d) {
  const parts = d.channels.map((name, c) => el("div", {},
    el("b", {}, `channel ${name}`),
    el("div", { className: "channel" },
      el("div", {}, "window", el("br"), table(d.window[c])),
      el("div", {}, "kernel", el("br"), table(d.kernel[c])),
      el("div", {}, "products", el("br"), table(d.products[c]))),
    el("div", { className: "sum" }, "sum = ", el("span", { className: "channel-sum" }, fmt(d.sums[c])))));
  const terms = d.sums.map(fmt).join(" + ").replaceAll("+ -", "− ");
  const where = d.layer ? `${d.layer}, output channel ${d.channel}, ` : "";
  $("cell").replaceChildren(
    el("h3", {}, `${where}cell (${d.cell[0]}, ${d.cell[1]})`),
    el("div", { className: "detail" }, parts),
    el("div", { className: "sum" }, `${terms} + ${fmt(d.bias)} (bias) = `, el("span", { id: "cell-total", className: "total" }, fmt(d.total))),
    d.conv2d != null ? el("div", { className: "muted" }, `PyTorch's conv2d gives ${fmt(d.conv2d)} at this cell.`) : null,
  );
}

loadRuns().then(loadModel).then(lectureExplorer).catch((e) => fail(e.message));
