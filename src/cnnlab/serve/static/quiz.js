// "Which one is real?": start a quiz, show each pair, send the visitor's pick, show the verdict,
// the score and every round so far, beside the machine's score (a real-vs-generated classifier).
"use strict";

let quiz = null;
const run = new URLSearchParams(location.search).get("run");

function showPair(pair, rounds) {
  $("round").textContent = `Round ${pair.index + 1} of ${rounds}`;
  $("left").src = pair.left;
  $("right").src = pair.right;
  for (const side of ["left", "right"]) $(`pick-${side}`).disabled = false;
}

async function start() {
  $("error").textContent = "";
  $("answers").replaceChildren();
  $("verdict").textContent = "";
  $("score").textContent = "0 / 0";
  try {
    const res = await api("/api/quiz" + (run ? `?run=${encodeURIComponent(run)}` : ""), { method: "POST" });
    quiz = await res.json();
    const m = quiz.machine;
    $("machine").textContent = m.accuracy == null ? "not measured" : `${(100 * m.accuracy).toFixed(1)}% held-out accuracy`;
    $("machine-note").textContent = m.note;
    showPair(quiz.pair, quiz.rounds);
  } catch (e) {
    $("error").textContent = e.message;
  }
}

async function pick(side) {
  for (const s of ["left", "right"]) $(`pick-${s}`).disabled = true;
  try {
    const res = await api(`/api/quiz/${quiz.quiz}/answer`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ pick: side }),
    });
    const a = await res.json();
    $("verdict").textContent = (a.correct ? "Right: " : "Wrong: ") + `the real image was on the ${a.real}.`;
    $("score").textContent = `${a.score} / ${a.answered}`;
    $("answers").replaceChildren(...a.answers.map((r) => el("li", { className: r.correct ? "correct" : "wrong" },
      `you picked ${r.pick}, real was ${r.real}: ${r.correct ? "right" : "wrong"}`)));
    if (a.next) showPair(a.next, a.rounds);
    else $("round").textContent = `Done: ${a.score} of ${a.rounds} right`;
  } catch (e) {
    $("error").textContent = e.message;
  }
}

$("pick-left").addEventListener("click", () => pick("left"));
$("pick-right").addEventListener("click", () => pick("right"));
$("again").addEventListener("click", start);
start();
