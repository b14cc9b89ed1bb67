"""`cnnlab generate RUN`: marked images from a trained generator, and how good they are;
`cnnlab provenance IMG...`: which run drew an image, and whether its pixels are unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli.options import RunArg, Weights
from cnnlab.cli.output import JsonFlag, console, emit, table


def generate(
    run_dir: RunArg,
    out: Annotated[Path, typer.Option("--out", help="Folder for grid.png, images/ and the interpolation strips.")],
    n: Annotated[int, typer.Option("-n", "--n", help="Images to draw.")] = 64,
    cls: Annotated[str | None, typer.Option("--class", help="A conditional run: draw this class (name or index).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the latent vectors (image i is latent vector i of it).")] = 0,
    interpolate: Annotated[bool, typer.Option("--interpolate", help="Also write latent interpolation strips.")] = False,
    feature_run: Annotated[Path | None, typer.Option(
        "--feature-run", help="A classifier run of the same images: measure classifier-FID, KID, precision/recall "
        "and class coverage of --measure-n samples in its features, beside the real-vs-real floor.")] = None,
    measure_n: Annotated[int, typer.Option("--measure-n", help="Images per set for the measures.")] = 1000,
    detector: Annotated[bool, typer.Option("--detector", help="Also train a fresh real-vs-generated classifier "
                                                              "and report its held-out accuracy.")] = False,
    weights: Weights = "model",
    as_json: JsonFlag = False,
) -> None:
    """Draw marked PNGs from a generate run (dcgan, cdcgan): a grid, single images, interpolation strips and the
    animated GIF of training; with --feature-run its measures, with --detector the machine's real-vs-generated score."""
    from cnnlab.generate.sample import training_animation, write_samples
    from cnnlab.run import Run

    run = Run.load(run_dir, weights=weights)
    samples = write_samples(run, out, n=n, cls=cls, seed=seed, interpolate=interpolate)
    doc = samples.to_dict()
    gif = training_animation(run)
    doc["files"]["training_gif"] = str(gif) if gif else None
    if feature_run is not None:
        from cnnlab.generate.measures import measure

        doc["measures"] = measure(run, Run.load(feature_run), n=measure_n, seed=seed)
    if detector:
        from cnnlab.generate.detect import train_detector

        doc["detector"] = train_detector(run, seed=seed)
    if as_json:
        emit(doc)
        return
    for name, path in doc["files"].items():
        if name != "strips":
            console.print(f"{name}: {path}")
    if "measures" in doc:
        m = doc["measures"]
        rows = [[key, f"{m[key]:.4f}", f"{m[f'{key}_floor']:.4f}"]
                for key in ("classifier_fid", "kid", "precision", "recall")]
        console.print(table(f"{run.name}: {m['n']} generated vs {m['n']} test images, in the features of "
                            f"{m['feature_run']} (floor: {m['n']} training vs the same test images)",
                            ["measure", "generated", "real-vs-real floor"], rows))
        console.print(f"classifier-FID / floor: {m['fid_over_floor']:.2f}; smallest class share "
                      f"{m['min_class_share']:.1%}" + (f"; labelled as the class asked for: {m['conditional_accuracy']:.1%}"
                                                       if m["conditional_accuracy"] is not None else ""))
        console.print(table("class shares of the samples", ["class", "share"],
                            [[c, f"{s:.1%}"] for c, s in m["class_shares"].items()]))
        console.print(m["note"])
    if "detector" in doc:
        console.print(f"real-vs-generated classifier: held-out accuracy {doc['detector']['accuracy']:.4f} "
                      "(0.5: indistinguishable)")


def provenance(
    images: Annotated[list[Path], typer.Argument(metavar="IMG...", help="PNG files to check.")],
    as_json: JsonFlag = False,
) -> None:
    """Which run generated each image (its PNG mark), and whether its pixels still match; exit 1 when any image
    is unmarked or altered."""
    from cnnlab.report.marks import check_mark

    checks = [check_mark(p) for p in images]
    if as_json:
        emit([c.to_dict() for c in checks])
    else:
        for c in checks:
            console.print(("ok: " if c.intact else "not ok: ") + c.sentence, markup=False, highlight=False)
    if not all(c.intact for c in checks):
        raise typer.Exit(1)
