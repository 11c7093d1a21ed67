"""`aisketcher evaluate`, `classifier train` and `experiment`: measure models against real sketches."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aisketcher.cli import arguments
from aisketcher.cli.arguments import positive_float, positive_int, seed, temperature
from aisketcher.cli.models import add_models_url
from aisketcher.errors import SketchDataError


def cmd_evaluate(args: argparse.Namespace) -> int:
    from aisketcher.data.dataset import parse_class_list
    from aisketcher.devices import resolve_device
    from aisketcher.evaluate.classifier import SketchClassifier
    from aisketcher.evaluate.report import REPORT_FILE, evaluate_run
    from aisketcher.evaluate.sets import EvalSettings
    from aisketcher.google_models import google_name, is_google

    if args.samples < 2:
        raise SketchDataError(f"--samples must be at least 2, got {args.samples}")
    device = str(resolve_device(args.device))
    classifier = SketchClassifier.load(args.classifier, device=device)
    settings = EvalSettings(
        classes=parse_class_list(args.classes) if args.classes else None,
        split=args.split,
        samples=args.samples,
        temperature=args.temperature,
        guidance=args.guidance,
        prior_spread=args.prior_spread,
        pen_temperature=args.pen_temperature,
        seed=args.seed,
        data_dir=args.data,
        heal_shares=args.heal,
    )
    source = args.run if is_google(args.run) else Path(args.run)
    # A model file may sit in a read-only folder (../shared/models), a Google model in the cache:
    # its report goes here instead.
    name = google_name(args.run) if is_google(args.run) else Path(args.run).name.split(".")[0]
    default_out = source / "eval" if isinstance(source, Path) and source.is_dir() else None
    out = Path(args.out) if args.out else default_out or Path(f"eval-{name}")
    report = evaluate_run(
        source,
        classifier,
        out,
        settings,
        compare=args.compare,
        device=device,
        models_url=args.models_url,
    )
    print(summary(report))
    print(f"wrote {out / REPORT_FILE} and {', '.join(report['figures'].values())}")
    return 0


def summary(report: dict) -> str:
    """A few lines a person reads first; the JSON has everything."""

    def num(value: float | None, digits: int = 3) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    def decoded(table: dict, digits: int = 3) -> str:
        """The reconstructions' figure and the class priors' limit, where the model has them."""
        kinds = (("reconstruct", "reconstruct"), ("training_codes", "training codes"))
        return "".join(f"  {say} {num(table[k]['all'], digits)}" for k, say in kinds if k in table)

    like = report["likelihood"].get("all", {})
    rec = report["recognizability"]
    lines = [
        f"{report['model']['config']} on {', '.join(report['classes'])} "
        f"({report['settings']['split']} split, temperature {report['settings']['temperature']})",
        f"likelihood: total {num(like.get('total'))}  l_r {num(like.get('l_r'))}  "
        f"l_z {num(like.get('l_z'))}  l_a {num(like.get('l_a'))}",
        f"recognizability: real (ceiling) {num(rec['real']['all'])}  draw {num(rec['draw']['all'])}"
        + decoded(rec),
    ]
    fid = report["fid"]
    lines.append(
        f"FID (pooled): floor {num(fid['floor']['all'], 2)}  draw {num(fid['draw']['all'], 2)}"
        + decoded(fid, 2)
    )
    pr = report["precision_recall"]["draw"]["all"]
    div = report["diversity"]
    lines.append(
        f"draw precision {num(pr['precision'])}  recall {num(pr['recall'])}; pHash diversity: "
        f"real {num(div['real']['mean_of_classes'], 2)}  draw {num(div['draw']['mean_of_classes'], 2)}"
    )
    modes = [
        f"{k} {num(rec[k]['all'])}" for k in ("translate", "complete_start", "complete") if k in rec
    ]
    if modes:
        lines.append(
            "recognizability of modes: " + "  ".join(modes) + " (translate: as the target)"
        )
    if "interpolate_ends" in rec:
        walk = report.get("interpolate", {})
        lines.append(
            f"interpolate: ends recognised {num(rec['interpolate_ends']['all'])} (the first "
            f"drawing as the start's class, the last as the end's); step over ends "
            f"{num(walk.get('step_over_ends', {}).get('all'))} "
            f"({num(1 / max(walk.get('steps', 2) - 1, 1))} for an even straight walk)"
        )
    copies = report.get("copy_check", {})
    if copies:
        lines.append(
            "copy check (nearest-training distance / real's; near-copy share): "
            + "  ".join(
                f"{k} {num(c['ratio'], 2)}, {num(c['near_copy_share'], 2)}"
                for k, c in copies.items()
            )
        )
    if "lengths" in report:
        n = report["lengths"]
        lines.append(
            f"lengths: real {num(n['real_mean'], 1)} points a sketch, drawn {num(n['draw_mean'], 1)}"
            f"; {num(n['draw_at_max_share'])} of drawings run to the longest without ending"
        )
    if "endings" in report:
        e = report["endings"]
        lines.append(
            f"complete: {num(e['mean_distinct_lengths'], 2)} distinct lengths among {e['per_start']}"
            f" endings of a start; {num(e['share_adding_nothing'], 2)} of endings add nothing"
        )
    healing = report.get("healing") or {}
    if "whole_reconstructed" in healing:
        w = healing["whole_reconstructed"]
        lines.append(
            "heal: reconstructions of the whole sketches retrieve their source top-1/top-10 "
            f"{num(w['retrieval_top1']['all'], 2)}/{num(w['retrieval_top10']['all'], 2)}"
        )
    for share in healing.get("shares", []):
        h = healing[f"{round(share * 100)}%"]
        kinds = ("damaged", "healed", "completed")
        lines.append(
            f"heal {round(share * 100)}% of strokes removed ({h['sketches']} sketches): recognised "
            + ", ".join(f"{k} {num(h[k]['recognizability']['all'])}" for k in kinds)
            + "; source retrieved top-1/top-10 "
            + ", ".join(
                f"{k} {num(h[k]['retrieval_top1']['all'], 2)}/{num(h[k]['retrieval_top10']['all'], 2)}"
                for k in kinds
            )
        )
    leak = report.get("leak_check")
    if leak:
        lines.append(
            f"leak check: l_r with each sketch's own influence memory {num(leak['own']['l_r'])}, "
            f"with another sketch's {num(leak['other']['l_r'])} (gap {num(leak['gap_l_r'])})"
        )
    if "diversity_ttest" in report:
        t = report["diversity_ttest"]
        lines.append(f"diversity t-test vs {t['other_model']}: t {num(t['t'])}, p {num(t['p'], 4)}")
    return "\n".join(lines)


def cmd_classifier_train(args: argparse.Namespace) -> int:
    from aisketcher.devices import resolve_device
    from aisketcher.evaluate.classifier import (
        ClassifierConfig,
        ClassifierTraining,
        train_classifier,
    )

    out = Path(args.out)
    training = ClassifierTraining(
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        max_per_class=args.max_per_class,
    )
    classifier = train_classifier(
        args.classes,
        args.data,
        config=ClassifierConfig([], raster_size=args.raster_size),
        training=training,
        device=str(resolve_device(args.device)),
        progress=True,
    )
    classifier.save(out)
    print(json.dumps({"out": str(out), "accuracy": classifier.info["accuracy"]}, indent=2))
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    import dataclasses

    from aisketcher.devices import resolve_device
    from aisketcher.evaluate.experiments import RUNNERS, earlier_summary, run_experiment
    from aisketcher.evaluate.results import write_results
    from aisketcher.evaluate.runs import Context, estimate_cost
    from aisketcher.evaluate.scales import SCALES

    scale = SCALES[args.scale]
    if args.steps is not None:
        scale = dataclasses.replace(scale, steps=args.steps)
    ctx = Context(
        out=Path(args.out),
        scale=scale,
        data_dir=args.data,
        device=str(resolve_device(args.device)),
        seed=args.seed,
        temperature=args.temperature,
        max_minutes=args.max_minutes,
    )
    names = list(RUNNERS) if args.name == "all" else [args.name]
    if args.estimate:
        seeds = 1 + len(args.repeat_seeds)
        total = sum(row["hours"] for name in names for row in estimate_cost(name, ctx, seeds=seeds))
        print(
            f"training all of it: about {total:.1f} h on {ctx.device} (measured steps; "
            "classifiers and evaluations not counted)"
        )
        return 0
    doc = Path(args.doc) if args.doc else None
    if args.repeats_only and not args.repeat_seeds:
        raise SketchDataError("--repeats-only needs --repeat-seeds", str(ctx.out))
    for name in names:
        earlier = earlier_summary(name, ctx.out, doc) if args.repeats_only else None
        run_experiment(name, ctx, args.repeat_seeds, earlier)
    results = write_results(ctx.out, doc)
    print(f"wrote {results}")
    return 0


EVALUATE_EPILOG = """examples:
  aisketcher classifier train --classes cat,airplane,bicycle,eye,guitar --out runs/clf-qd5
  aisketcher evaluate runs/demo --classifier runs/clf-qd5 --out runs/demo/eval
  aisketcher evaluate runs/demo --classifier runs/clf-qd5 --classes cat --samples 50 --seed 1
  aisketcher evaluate ../shared/models/magenta-js/bicycle.gen.json --classifier runs/clf-qd5 \\
      --out eval-bicycle
  aisketcher evaluate runs/b --classifier runs/clf-qd5 --compare runs/demo/eval/evaluation.json

Writes evaluation.json (every number) and samples.png, reconstructions.png, tsne.png and
loss_curves.png (those the model allows) to --out (default: RUN/eval, or eval-NAME in the current
folder for a model file)."""


def heal_shares(text: str) -> list[float]:
    """`--heal`: shares of strokes to remove, each above 0 and below 1, or 'none'."""
    if text.strip().lower() == "none":
        return []
    try:
        shares = [float(part) for part in text.split(",")]
    except ValueError:
        shares = []
    if not shares or not all(0 < share < 1 for share in shares):
        raise argparse.ArgumentTypeError(
            f"expected shares between 0 and 1 such as 0.1,0.3 (or none), got '{text}'"
        )
    return shares


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="measure a model: likelihood, recognizability, FID, precision/recall, diversity, "
        "copy and leak checks",
        description="Evaluate a run directory, an exported model or a magenta-js .gen.json on the "
        "real sketches of its classes: the paper's loss terms per class; recognizability, FID "
        "and precision/recall (k = 3) of class-only drawings and reconstructions, on the "
        "features of a sketch classifier (see `aisketcher classifier train`), and of drawings "
        "from the codes of random training sketches of each class ('training codes': what a "
        "class prior that fitted the encoder's codes exactly would draw); recognizability of "
        "translations and completions; interpolations from the first test sketches of each "
        "class to those of the next class (as `interpolate --classes a,b`, 5 drawings): their "
        "ends recognised as their classes, and how evenly the drawings step between them in the "
        "classifier's features; pHash diversity; the copy check (how near each mode's drawings "
        "come to their nearest training sketch, against unseen real sketches); the leak check "
        "(does the influence memory read the points it predicts? test l_r with another "
        "sketch's memory against its own); healing (test sketches with 10%% and 30%% of their "
        "strokes removed, the masks saved in damage_masks.json, redrawn whole: recognizability "
        "and retrieval of the source by the damaged, healed and completed sketches); figures. "
        "The same run, seed and settings give the "
        "same numbers.",
        epilog=EVALUATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "run",
        metavar="RUN",
        help="run directory, exported model, .gen.json file, or google:NAME (one of Google's "
        "models, downloaded once)",
    )
    add_models_url(p)
    p.add_argument(
        "--classifier", required=True, metavar="DIR", help="a folder from `classifier train`"
    )
    p.add_argument("--classes", default=None, help="comma-separated subset (default: all)")
    p.add_argument("--split", default="test", choices=["test", "valid"], help="default test")
    p.add_argument(
        "--out", default=None, help="output folder (default RUN/eval; eval-NAME for a file)"
    )
    p.add_argument(
        "--samples",
        type=positive_int,
        default=100,
        help="real and generated sketches per class (100)",
    )
    arguments.add_drawing_settings(p)
    p.add_argument(
        "--seed",
        type=seed,
        default=0,
        help="seeds the drawings and the samples of real sketches: same seed, same numbers (0)",
    )
    p.add_argument(
        "--data", default=None, help="data folder (default: the run's files, or ../shared/data)"
    )
    p.add_argument("--device", default="cpu", type=arguments.device, help=arguments.DEVICE_HELP)
    p.add_argument(
        "--heal",
        type=heal_shares,
        default=[0.1, 0.3],
        metavar="SHARES",
        help="comma-separated shares of strokes removed for the healing measure (default "
        "0.1,0.3; 'none' skips it)",
    )
    p.add_argument(
        "--compare",
        default=None,
        metavar="JSON",
        help="another model's evaluation.json: t-test of the two models' diversity",
    )
    p.set_defaults(func=cmd_evaluate)

    c = sub.add_parser(
        "classifier",
        help="the sketch classifier behind the evaluation metrics",
        description="A compact CNN over rasterized sketches, used by `aisketcher evaluate`.",
        epilog="examples:\n"
        "  aisketcher classifier train --classes cat,airplane,bicycle,eye,guitar --out runs/clf\n"
        "  aisketcher evaluate runs/demo --classifier runs/clf\n"
        "run 'aisketcher classifier train --help' for its options",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    csub = c.add_subparsers(dest="classifier_command", metavar="COMMAND", required=True)
    t = csub.add_parser(
        "train",
        help="train a sketch classifier on the training split of some classes",
        description="Train the evaluation classifier (a CNN on rasters, with augmentation) on "
        "the training split; keeps the epoch with the best validation accuracy and reports "
        "its test accuracy. Saved as classifier.safetensors + classifier.json.",
        epilog="examples:\n"
        "  aisketcher classifier train --classes cat,airplane,bicycle,eye,guitar --out runs/clf\n"
        "  aisketcher classifier train --classes cat,bicycle --epochs 4 --seed 1 --out clf2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("--classes", required=True, help="comma-separated class names or .npz files")
    t.add_argument(
        "--data", default=None, help="data folder (default $AISKETCHER_DATA or ../shared/data)"
    )
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument(
        "--epochs", type=positive_int, default=12, help="passes over the training split (12)"
    )
    t.add_argument("--batch-size", type=positive_int, default=64, help="rasters per batch (64)")
    t.add_argument("--raster-size", type=positive_int, default=64, help="input image side (64)")
    t.add_argument(
        "--max-per-class",
        type=positive_int,
        default=None,
        help="train on at most this many per class",
    )
    t.add_argument(
        "--seed", type=seed, default=0, help="seeds the weights, order and augmentation (0)"
    )
    t.add_argument("--device", default="cpu", type=arguments.device, help=arguments.DEVICE_HELP)
    t.set_defaults(func=cmd_classifier_train)

    e = sub.add_parser(
        "experiment",
        help="run the paper's experiments: train, evaluate, write results.md and figures",
        description="Train every model of an experiment with the same budget, evaluate them "
        "(see `aisketcher evaluate`) and write figures, <experiment>.json and results.md to "
        "--out. Runs are shared between experiments and resumed when they exist, so an "
        "interrupted experiment continues where it stopped. ablation: sketch-rnn-cond, "
        "ai-sketcher-no-influence, ai-sketcher-no-autoencoder, ai-sketcher and ai-sketcher-paper-memory (the paper-literal memory, to show its copy channel) on QD5; multiclass: "
        "sketch-rnn-cond, sketch-pix2seq, ai-sketcher on QD5/10/15/20; diversity: ai-sketcher vs "
        "sketch-rnn-cond, 50 drawings per QD5 class, pHash t-test.",
        epilog="examples:\n"
        "  aisketcher experiment ablation --scale toy --out /tmp/exp   # minutes: a dry run\n"
        "  aisketcher experiment all --scale cpu --out runs/experiments --doc docs/results.md\n"
        "  aisketcher experiment multiclass --scale paper --device cuda --out runs/paper --estimate\n"
        "  aisketcher experiment multiclass --scale paper --device cuda --out runs/paper\n"
        "  aisketcher experiment diversity --scale cpu --steps 2000 --out runs/short\n"
        "  aisketcher experiment ablation --scale cpu --out runs/experiments --repeat-seeds 1 2\n"
        "  aisketcher experiment multiclass --out runs/seed1 --doc docs/results.md "
        "--repeat-seeds 1 --repeats-only",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument(
        "name",
        choices=["ablation", "multiclass", "diversity", "all"],
        help="which experiment (all: the three)",
    )
    e.add_argument(
        "--scale",
        default="cpu",
        choices=["toy", "cpu", "paper"],
        help="toy: seconds, tiny models, 2-3 classes; cpu: small models, 1000 steps; "
        "paper: paper sizes, 50000 steps (default cpu)",
    )
    e.add_argument("--out", required=True, help="folder for runs, evaluations and results")
    e.add_argument(
        "--steps", type=positive_int, default=None, help="override the scale's step budget"
    )
    e.add_argument(
        "--max-minutes", type=positive_float, default=None, help="time limit per training run"
    )
    e.add_argument("--doc", default=None, help="also write results here, e.g. docs/results.md")
    e.add_argument(
        "--estimate",
        action="store_true",
        help="train nothing: time two steps of every model on --device and print what the whole "
        "experiment's training would take (e.g. --scale paper --device cuda before renting GPUs)",
    )
    e.add_argument(
        "--temperature", type=temperature, default=0.4, help="sampling temperature (0.4)"
    )
    e.add_argument("--seed", type=seed, default=0, help="training and sampling seed (0)")
    e.add_argument(
        "--repeat-seeds",
        type=seed,
        nargs="+",
        default=(),
        metavar="SEED",
        help="also train and evaluate the models at these seeds (runs in OUT/seed<k>/; "
        "multiclass: QD5 and QD20 only) and add a table of the spread over seeds; the figures "
        "stay those of --seed",
    )
    e.add_argument(
        "--repeats-only",
        action="store_true",
        help="train only the --repeat-seeds and add their rows to the experiment's results "
        "written before (OUT/<experiment>.json, or else the one beside --doc), e.g. to add a "
        "seed in a later sitting; a classifier missing from OUT is trained again from its seed "
        "(bit for bit the same on the same kind of machine: measured)",
    )
    e.add_argument(
        "--data", default=None, help="data folder (default $AISKETCHER_DATA or ../shared/data)"
    )
    e.add_argument("--device", default="cpu", type=arguments.device, help=arguments.DEVICE_HELP)
    e.set_defaults(func=cmd_experiment)
