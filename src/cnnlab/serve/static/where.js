// The lab page for runs that say where: a detection run's boxes, a segmentation run's class
// map or a pose run's skeleton, drawn over the picture the user drew or uploaded. The server
// answers in the picture's own pixels (task_api.py), so each drawing is that picture scaled to
// the canvas, and the answer scaled by the same factor.
//
// A task's entry in WHERE: the endpoint that answers it, the function that draws its answer,
// the query its controls make, and which controls (class where-control) it shows. Cards of
// the page marked data-task="classify" are for classifiers and hidden for these runs, and the
// other way round.
"use strict";

const WHERE = {
  detect: {
    path: "/api/detect", draw: drawBoxes, query: () => ({ min_score: $("min-score").value }), controls: ["min-score-control"],
    note: "Boxes scored at least the min score, labelled with their class and score: a lower one finds more objects, and more false ones",
  },
  segment: {
    path: "/api/segment", draw: drawMask, query: () => ({}), controls: [],
    note: "Each pixel's class, painted over the picture (class 0, the background, left clear)",
  },
  pose: {
    path: "/api/pose", draw: drawPose, query: () => ({}), controls: [],
    note: "Each body joint where the model's last stage puts it, joined by the skeleton's sticks",
  },
};
const WHERE_SIDE = 360;   // px: the longer side of the picture on the page
const MASK_ALPHA = 0.55;  // the picture stays visible under the classes

let servedTask = "classify";

// Show the cards of the run's task and hide the others'.
function showTask(task) {
  servedTask = task;
  const where = WHERE[task] ? task : null;
  document.querySelectorAll("[data-task]").forEach((card) => {
    card.hidden = card.dataset.task !== (where ? "where" : "classify");
  });
  if (!where) return;
  $("where-note").textContent = WHERE[task].note + ".";
  document.querySelectorAll(".where-control").forEach((c) => { c.hidden = !WHERE[task].controls.includes(c.id); });
}

$("min-score").oninput = () => { $("min-score-value").textContent = Number($("min-score").value).toFixed(2); };
$("min-score").onchange = () => { if (image) where().catch((e) => fail(e.message)); };

// The current picture on the canvas, fitted into WHERE_SIDE; returns the canvas's 2-D context
// and the factor from the picture's pixels to the canvas's.
async function drawPicture(width, height) {
  const bitmap = await createImageBitmap(image);
  const scale = WHERE_SIDE / Math.max(width, height);
  const canvas = $("where");
  canvas.width = Math.round(width * scale);
  canvas.height = Math.round(height * scale);
  const g = canvas.getContext("2d");
  g.imageSmoothingEnabled = scale < 1;   // a small picture enlarged stays in sharp pixels
  g.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  return [g, scale];
}

function drawBoxes(g, scale, doc) {
  g.lineWidth = 3;
  g.font = "bold 13px system-ui, sans-serif";
  g.textBaseline = "bottom";
  for (const found of doc.boxes) {
    const [x1, y1, x2, y2] = found.box.map((v) => v * scale);
    const colour = doc.colours[doc.classes.indexOf(found.class)] || "#fff";
    const label = `${found.class} ${found.score.toFixed(2)}`;   // canvas text: drawn pixels, never markup
    g.strokeStyle = colour;
    g.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const top = Math.max(16, y1);
    g.fillStyle = colour;
    g.fillRect(x1 - 1.5, top - 16, g.measureText(label).width + 6, 16);
    g.fillStyle = "#fff";
    g.fillText(label, x1 + 1.5, top - 1);
  }
  $("where-list").replaceChildren(...doc.boxes.map((found) => el("li", {},
    el("b", {}, found.class), ` ${found.score.toFixed(2)} at `,
    el("span", { className: "muted" }, `(${found.box.map((v) => Math.round(v)).join(", ")})`))));
  legend(doc, null);
}

// Joints arrive in the picture's pixels, pixel centres at integers (pixel i spans i..i+1 on
// the canvas, so its centre is at i + 0.5); the sticks join the pairs of names in doc.limbs.
function drawPose(g, scale, doc) {
  const at = (name) => doc.joints[name].map((v) => (v + 0.5) * scale);
  g.lineWidth = 3;
  g.strokeStyle = "#e6194b";
  for (const [a, b] of doc.limbs) {
    g.beginPath();
    g.moveTo(...at(a));
    g.lineTo(...at(b));
    g.stroke();
  }
  g.fillStyle = "#fff";
  for (const name of Object.keys(doc.joints)) {
    g.beginPath();
    g.arc(...at(name), 3.5, 0, 2 * Math.PI);
    g.fill();
  }
  $("where-list").replaceChildren(...Object.entries(doc.joints).map(([name, [x, y]]) => el("li", {},
    el("b", {}, name), " at ", el("span", { className: "muted" }, `(${Math.round(x)}, ${Math.round(y)})`))));
  $("where-legend").replaceChildren();
}

// The class map arrives as a gray PNG of class indices at the picture's size: each class is
// coloured here, background clear, then laid over the picture.
async function drawMask(g, scale, doc) {
  const bitmap = await createImageBitmap(await (await fetch(doc.mask)).blob());
  const layer = el("canvas", { width: doc.width, height: doc.height });
  const lg = layer.getContext("2d");
  lg.drawImage(bitmap, 0, 0);
  const pixels = lg.getImageData(0, 0, doc.width, doc.height);
  const rgb = doc.colours.map((c) => (c ? [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16)) : null));
  const p = pixels.data;
  for (let i = 0; i < p.length; i += 4) {
    const colour = rgb[p[i]];
    if (colour) [p[i], p[i + 1], p[i + 2], p[i + 3]] = [...colour, Math.round(255 * MASK_ALPHA)];
    else p[i + 3] = 0;
  }
  lg.putImageData(pixels, 0, 0);
  g.imageSmoothingEnabled = false;   // class borders stay sharp, as the model drew them
  g.drawImage(layer, 0, 0, doc.width * scale, doc.height * scale);
  $("where-list").replaceChildren();
  legend(doc, doc.pixels);
}

// A swatch and the name of each class but the background; with `shares`, its share of the pixels.
function legend(doc, shares) {
  $("where-legend").replaceChildren(...doc.classes.flatMap((name, k) => (doc.colours[k] ? [el("span", { className: "key" },
    el("span", { className: "swatch", style: `background:${doc.colours[k]}` }), name,
    shares ? el("span", { className: "muted" }, ` ${pct(shares[name] || 0)}`) : null)] : [])));
}

let whereSeq = 0;
async function where() {
  const seq = ++whereSeq;   // a slider moves faster than the server answers: draw the newest answer only
  const doc = await (await call(WHERE[servedTask].path, {}, WHERE[servedTask].query())).json();
  if (seq !== whereSeq) return;
  const [g, scale] = await drawPicture(doc.width, doc.height);
  await WHERE[servedTask].draw(g, scale, doc);
}
