"""The report section "Generation": the images of the same latent vectors after each epoch,
the animated GIF of training, the measures in a classifier's features, and the real-vs-generated
classifier's score. Left out of runs that generate nothing."""

from __future__ import annotations

import base64
from html import escape

from cnnlab.generate.sample import epoch_grids, training_animation
from cnnlab.report.html import img, table
from cnnlab.run import Run


def section(run: Run) -> str | None:
    grids = epoch_grids(run)
    if not grids:
        return None
    parts = ["<h2>Generation</h2><p>The images of the same fixed latent vectors after each epoch "
             "(each PNG carries its mark: `cnnlab provenance`).</p>"]
    parts += [f"<h3>Epoch {int(g.stem.split('-')[1])}</h3>" + img(g, g.stem) for g in grids]
    gif = training_animation(run)
    if gif is not None:
        data = base64.b64encode(gif.read_bytes()).decode()
        parts.append(f'<h3>Training, animated</h3><img alt="training" src="data:image/gif;base64,{data}">')
    m = run.results("generate/measures")
    if m is not None:
        rows = [[key.replace("_", " "), f"{m[key]:.4f}", f"{m[f'{key}_floor']:.4f}"]
                for key in ("classifier_fid", "kid", "precision", "recall")]
        shares = ", ".join(f"{escape(c)} {s:.1%}" for c, s in m["class_shares"].items())
        asked = m.get("conditional_accuracy")
        parts.append(
            f"<h3>Measures in the features of run {escape(m['feature_run'])}</h3>"
            f"<p>{m['n']} generated images and {m['n']} training images, each against the same {m['n']} test images; "
            f"{escape(m['note'])}</p>" + table(["measure", "generated", "real-vs-real floor"], rows)
            + f"<p>classifier-FID / floor {m['fid_over_floor']:.2f}. Class shares of the samples: {shares}"
            + (f". Labelled as the class asked for: {asked:.1%}" if asked is not None else "") + ".</p>"
        )
    d = run.results("generate/detector")
    if d is not None and d.get("accuracy") is not None:
        parts.append(f"<h3>Real or generated?</h3><p>A {escape(str(d['model']))} trained fresh to tell real from generated "
                     f"images ({d['train_images']} of them) scores {d['accuracy']:.4f} on {d['test_images']} it never saw "
                     "(0.5: it cannot tell them apart).</p>")
    return "".join(parts)
