"""The pages the docs build writes from the code itself (docs/conf.py calls :func:`write_pages` at every
build, into docs/generated/, which is not committed): what the code says is what the site says.

- ``commands/``: a page per command of ``vggspec.cli``'s parser (:mod:`vggspec.cli.reference` renders it),
  and a page of them all; a new command gets its page by being added to the parser.
- ``specs/``: a page per bundled spec (:func:`vggspec.spec.bundled.bundled_names`): its text, its numbers
  (``vggspec.analyze``), its drawing (``vggspec graph``, rendered here by Graphviz), its column of Table 1
  (``vggspec table``), and for the paper's configurations the paper's numbers and torchvision's model.
- ``gallery.md``: what vggspec draws, made by the build: E's graph, the curves of a tiny training run
  (seconds, on the CPU), a diff, and the notebook views.
- the pages kept at the repository's root (benchmarks, architecture, changelog), their links into the
  repository pointed at the source.

Pictures and pages are written only when they changed, so that Sphinx reads again only what did.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "https://github.com/vggspec/vggspec/blob/main/"

# Root files shown as pages.
ROOT_PAGES = {"benchmarks.md": "BENCHMARKS.md", "architecture.md": "ARCHITECTURE.md", "changelog.md": "CHANGELOG.md"}

# Table 2 of the paper: each configuration's parameters, in millions as printed.
TABLE_2 = {"A": 133, "A-LRN": 133, "B": 133, "C": 134, "D": 138, "E": 144}
# The configurations torchvision builds (each also with batch norm, NAME_bn); A-LRN and C it has not.
TORCHVISION = {"A": "vgg11", "B": "vgg13", "D": "vgg16", "E": "vgg19"}
# The paper's single-scale errors (Table 3) are held where `vggspec evaluate` prints them beside measured
# ones: vggspec.run.evaluate.PAPER.

# The gallery's training run: a tiny network on drawn shapes, trained at build time on the CPU in seconds.
GALLERY_SPEC = """\
# Two stages of conv3 + batch norm and a small classifier, for 16×16 drawn shapes.
name: shapes
input: 16x16 RGB

conv3-8 [bn]
maxpool
conv3-16 [bn]
maxpool
FC-32
FC-3
soft-max
"""
GALLERY_DATA = {"classes": 3, "train": 32, "val": 12, "size": 16}  # vggspec.data.samples.image_folder's
GALLERY_RUN = {
    "epochs": 8, "batch_size": 16, "lr": 0.05, "init": "kaiming", "normalise": "mean", "stats_images": 40,
    "workers": 0, "progress": False,
}  # fmt: skip


# The site's few rules of its own (docs/conf.py links _static/vggspec.css): a flag or value stays on one line
# in the reference's tables, a drawing keeps its white paper in the dark theme, and the notebook views look as
# in Jupyter.
STYLE = """\
article table code.literal { white-space: nowrap; }
article img[src$=".svg"] { background: #fff; border-radius: 4px; }
.vggspec-notebook { overflow-x: auto; margin-bottom: 1.5em; }
.vggspec-notebook table { border-collapse: collapse; font-size: 0.8em; font-variant-numeric: tabular-nums; }
.vggspec-notebook caption { caption-side: top; text-align: left; padding: 0.3em 0; }
.vggspec-notebook th, .vggspec-notebook td {
  padding: 0.15em 0.6em; white-space: nowrap; border-bottom: 1px solid var(--color-background-border, #ddd);
}
"""


def write_pages(out: Path) -> None:
    write(out / "_static" / "vggspec.css", STYLE)
    for page, source in ROOT_PAGES.items():
        write(out / page, root_page(source))
    write_command_pages(out / "commands")
    write_spec_pages(out / "specs")
    write_gallery(out)


# -- files ------------------------------------------------------------------------------------------------


def write(path: Path, text: str) -> None:
    """Write a page only when it changed, so that Sphinx reads again only what did."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)


def link(page: Path, target: Path) -> str:
    """The relative link from ``page`` to ``target`` (both under docs/), as MyST takes it."""
    return Path(os.path.relpath(target, page.parent)).as_posix()


def root_page(name: str) -> str:
    """A root file as a page: a relative link to a file of the repository becomes a link to its source;
    one into docs/ stays a link between pages."""
    text = (ROOT / name).read_text(encoding="utf-8")

    def to_source(match: re.Match[str]) -> str:
        target = match["target"]
        if re.match(r"[a-z]+:|#", target):
            return match[0]
        if target.startswith("docs/") and target.endswith(".md") or ".md#" in target and target.startswith("docs/"):
            return f"](../{target.removeprefix('docs/')})"
        return f"]({SOURCE}{target})"

    return re.sub(r"\]\((?P<target>[^)\s]+)\)", to_source, text)


# -- commands ---------------------------------------------------------------------------------------------


def write_command_pages(out: Path) -> None:
    """commands/index.md (the program and a table of its commands) and commands/NAME.md for each command,
    each with its exit codes as ``vggspec.cli.exit_codes`` says them (and --help ends with them)."""
    from vggspec.cli import _parser, exit_codes
    from vggspec.cli.completion import commands_of
    from vggspec.cli.reference import markdown_commands, markdown_reference

    parser = _parser()
    write(out / "index.md", markdown_commands(parser, exit_codes()))
    for name, (_, command) in commands_of(parser).items():
        write(out / f"{name}.md", markdown_reference(command, name, exit_codes(name)))


# -- bundled specs ----------------------------------------------------------------------------------------


def bundled_spec(name: str):
    """A bundled spec, read with its path in the repository as its source (``specs/D.vgg``): pages and
    pictures name it so, not by this machine's path."""
    from vggspec import parse
    from vggspec.spec.bundled import specs_dir

    path = specs_dir() / f"{name}.vgg"
    source = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    return parse(path.read_text(encoding="utf-8"), filename=source)


def write_spec_pages(out: Path) -> None:
    """specs/index.md (every bundled spec in a table) and specs/NAME.md (small/NAME.md for small/NAME) with
    NAME.svg beside it, the drawing ``vggspec graph`` makes."""
    from vggspec import analyze
    from vggspec.plan.drawing import to_dot
    from vggspec.plan.report import classes, input_text
    from vggspec.spec.bundled import bundled_names
    from vggspec.units import human_count

    index, conventions = out / "index.md", out.parent.parent / "conventions.md"  # out: docs/generated/specs
    rows, pages = [], []
    for name in bundled_names():
        spec = bundled_spec(name)
        analysis = analyze(spec)
        page = out / f"{name}.md"
        write_bytes(page.with_suffix(".svg"), to_dot(analysis).pipe(format="svg"))
        write(page, spec_page(name, spec, analysis, page, conventions))
        pages.append(name)
        rows.append(
            f"| [{name}]({name}.md) | {_cell(spec.display_name)} | {_unbroken(input_text(spec))} "
            f"| {classes(analysis):,} | {analysis.params:,} | {_unbroken(human_count(analysis.macs))} |"
        )
    write(
        index,
        "\n".join(
            [
                "# Bundled specs",
                "",
                "The specs that ship with vggspec, each by the name every command takes (`vggspec analyze D`, "
                "`vggspec train small/A-narrow-32`): Table 1's six configurations and a few small networks. "
                "Each page shows the spec, its numbers, its drawing and its column of Table 1, written from the "
                "spec at every build of this site; `vggspec list` prints this table.",
                "",
                "| name | display name | input | classes | parameters | MACs |",
                "|---|---|---|---:|---:|---:|",
                *rows,
                "",
                f"MACs: multiply-accumulates per image ([conventions]({link(index, conventions)})).",
                "",
                "```{toctree}",
                ":hidden:",
                "",
                *pages,
                "```",
                "",
            ]
        ),
    )


def spec_page(name: str, spec, analysis, page: Path, conventions_page: Path) -> str:
    """A bundled spec's page (``page``, where it is written: the links are relative to it)."""
    from vggspec.plan.report import table1

    conventions = link(page, conventions_page)
    header = " ".join(c.text.lstrip("#").strip() for c in spec.comments if c.leading)
    lines = [f"# {name}", ""]
    if header:
        lines += [_cell(header), ""]
    lines += [
        f"`{name}` is the name every command takes (`vggspec analyze {name}`); its file is "
        f"[{spec.source}]({SOURCE}{spec.source}).",
        "",
        "## The spec",
        "",
        "```vgg",
        (spec.text or "").rstrip(),
        "```",
        "",
        "## The numbers",
        "",
        f"At its declared input, as `vggspec analyze {name}` computes them "
        f"([conventions]({conventions}): MACs are multiply-accumulates, FLOPs twice as many).",
        "",
        *numbers_table(analysis),
        "",
    ]
    lines += paper_section(name, analysis)
    lines += torchvision_section(name, analysis, conventions)
    lines += [
        "## Drawing",
        "",
        f"A column per stage, each box a layer (or a run of equal ones) with its output shape and parameters: "
        f"`vggspec graph {name}`.",
        "",
        f"[![The layer graph of {_cell(spec.display_name)}]({Path(name).name}.svg)]({Path(name).name}.svg)",
        "",
        "## Table 1's column",
        "",
        f"As the paper's Table 1 sets it: `vggspec table {name}`.",
        "",
        table1([spec]).rstrip(),
        "",
    ]
    return "\n".join(lines)


def _unbroken(text: str) -> str:
    """``7.61 G``, ``224×224 RGB`` kept on one line in a narrow column (no-break spaces)."""
    return text.replace(" ", "\u00a0")


def _cell(text: str) -> str:
    from vggspec.cli.reference import escape

    return escape(text)


def numbers_table(analysis) -> list[str]:
    """The spec's numbers, a row each: input, classes, layers, parameters, MACs, FLOPs, activations,
    receptive field."""
    from vggspec.plan.report import classes, input_text
    from vggspec.units import human_bytes, human_count

    spec = analysis.spec
    feature = [la for la in analysis.layers if spec.layers[la.index].SPATIAL]
    rows = [
        ("input", f"{input_text(spec)} (smallest valid: {analysis.min_input_size}×{analysis.min_input_size})"),
        ("classes", f"{classes(analysis):,}"),
        ("weight layers", f"{analysis.weight_layers}"),
        ("parameters", f"{analysis.params:,} ({human_count(analysis.params)})"),
        ("MACs per image", f"{analysis.macs:,} ({human_count(analysis.macs)})"),
        ("FLOPs per image", f"{analysis.flops:,} ({human_count(analysis.flops)}: 2 × MACs)"),
        (
            "activations per image",
            f"{analysis.activations:,} values, {human_bytes(analysis.activation_bytes)} in float32 "
            "(every layer's output)",
        ),
    ]
    if feature:
        last = feature[-1]
        rows.append(
            (
                f"receptive field at {last.name}",
                f"{last.receptive_field} px, effective stride {last.effective_stride}, "
                f"effective padding {last.effective_padding}",
            )
        )
    return ["| | |", "|---|---|", *(f"| {key} | {_cell(value)} |" for key, value in rows)]


def paper_section(name: str, analysis) -> list[str]:
    """For Table 1's configurations: Table 2's parameter count against ours, Table 3's errors."""
    if name not in TABLE_2:
        return []
    from vggspec.run.evaluate import PAPER

    single = {key: errors for key, errors in PAPER.items() if key[0] == name and key[3] == "dense" and len(key[4]) == 1}
    lines = [
        "## In the paper",
        "",
        f"Table 2: {TABLE_2[name]} million parameters; counted here, {analysis.params:,} "
        f"({analysis.params / 1e6:.0f} million).",
        "",
        "Table 3: top-1 / top-5 error on ILSVRC-2012 validation, one test scale Q, dense evaluation:",
        "",
        "| training scale S | test scale Q | top-1 error (%) | top-5 error (%) |",
        "|---|---:|---:|---:|",
    ]
    for (_, low, high, _, (q,)), (top1, top5) in single.items():
        scale = f"{low}" if low == high else f"[{low}, {high}] (jittered)"
        lines.append(f"| {scale} | {q} | {top1} | {top5} |")
    return [*lines, ""]


def torchvision_section(name: str, analysis, conventions: str) -> list[str]:
    """The torchvision model of the same network (and its batch-norm twin): parameters, its weights' errors on
    ImageNet and its "GFLOPS", read from the installed torchvision's weight enums (no download)."""
    if name not in TORCHVISION:
        return []
    from torchvision.models import get_model_weights

    lines = [
        "## In torchvision",
        "",
        f"torchvision builds this network as `{TORCHVISION[name]}` (`vggspec compile {name} --weights "
        f"torchvision:{TORCHVISION[name]}` loads its weights), and with batch norm after every convolution as "
        f"`{TORCHVISION[name]}_bn`. Its weights' numbers, from the installed torchvision's weight enums:",
        "",
        '| model | weights | parameters | top-1 error (%) | top-5 error (%) | torchvision\'s "GFLOPS" |',
        "|---|---|---:|---:|---:|---:|",
    ]
    ops = None
    for model in (TORCHVISION[name], f"{TORCHVISION[name]}_bn"):
        weights = get_model_weights(model).DEFAULT
        meta = weights.meta
        metrics = meta["_metrics"]["ImageNet-1K"]
        extra = meta["num_params"] - analysis.params
        params = f"{meta['num_params']:,}" + (f" ({extra:+,}: batch norm)" if extra else " (the same)")
        ops = meta["_ops"] if ops is None else ops
        lines.append(
            f"| `{model}` | `{weights.name}` | {params} | {100 - metrics['acc@1']:.2f} | {100 - metrics['acc@5']:.2f} "
            f"| {meta['_ops']:g} |"
        )
    ours = analysis.macs / 1e9
    agree = math.isclose(round(ours, 3), ops, abs_tol=1e-3)
    lines += [
        "",
        f'torchvision\'s "GFLOPS" are multiply-accumulates: {ops:g} for `{TORCHVISION[name]}`, '
        + (
            f"which is this spec's {ours:.3f} G MACs, half of its {2 * ours:.2f} GFLOPs"
            if agree
            else f"against this spec's {ours:.3f} G MACs ({2 * ours:.2f} GFLOPs)"
        )
        + f" ([conventions]({conventions})). Its errors are those of torchvision's own recipe and evaluation "
        "(one 224×224 centre crop of the image resized to 256), not the paper's dense evaluation above.",
        "",
    ]
    return lines


# -- the gallery ------------------------------------------------------------------------------------------


def write_gallery(out: Path) -> None:
    """gallery.md and its pictures under gallery/: made by the build, from a training run in a temporary
    folder (nothing of it is kept but its curves)."""
    from vggspec import analyze
    from vggspec.plan.diff import diff

    pictures = out / "gallery"
    old, new = bundled_spec("D"), bundled_spec("E")
    changes = diff(old, new)
    run = training_run(pictures)
    page = [
        "# Gallery",
        "",
        "What vggspec draws and prints, made by the build of this page from the code as it is.",
        "",
        "## The layer graph of E",
        "",
        "`vggspec graph E`: a column per stage, each box a layer or a run of equal layers, with its output shape "
        "and parameters ([E's page](specs/E.md) has its numbers).",
        "",
        "[![The layer graph of E](specs/E.svg)](specs/E.svg)",
        "",
        *run,
        "## A diff",
        "",
        "`vggspec diff D E`: the layers aligned, what E adds to D and what it costs, and the receptive field at "
        "each stage's end:",
        "",
        "```text",
        str(changes),
        "```",
        "",
        "In a notebook, the diff shows as a table, the added layers in bold (as Table 1 sets them):",
        "",
        *raw_html(changes._repr_html_()),
        "## An analysis in a notebook",
        "",
        '`vggspec.analyze(vggspec.load("D"))` as a notebook cell\'s last line: a row per layer and the totals '
        "(`print()` gives the text `vggspec analyze D` prints).",
        "",
        *raw_html(analyze(old)._repr_html_()),
    ]
    write(out / "gallery.md", "\n".join(page))


def raw_html(html: str) -> list[str]:
    """A notebook view embedded in the page as it renders in Jupyter: its HTML, in a frame that scrolls
    sideways (:data:`STYLE` draws the rules between rows, as a notebook's stylesheet does)."""
    return ["```{raw} html", f'<div class="vggspec-notebook">{html}</div>', "```", ""]


def training_run(pictures: Path) -> list[str]:
    """Train :data:`GALLERY_SPEC` on drawn shapes in a temporary folder, through the Python API; the section
    of the page that shows it: the spec, the command it equals, the data, the epochs and RUN/curves.png."""
    from vggspec.data.samples import SHAPES, image_folder
    from vggspec.run.config import TrainConfig
    from vggspec.run.train import train

    with tempfile.TemporaryDirectory(prefix="vggspec-gallery-") as folder, _quiet("vggspec"):
        root = Path(folder)
        (root / "shapes.vgg").write_text(GALLERY_SPEC, encoding="utf-8")
        data = image_folder(root / "shapes", **GALLERY_DATA)
        config = TrainConfig(spec=str(root / "shapes.vgg"), data=str(data), out=str(root / "run"), **GALLERY_RUN)
        run = train(config)
        write_bytes(pictures / "curves.png", (run / "curves.png").read_bytes())
        write_bytes(pictures / "shapes.png", _contact_sheet(data, GALLERY_DATA["classes"]))
        epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
        summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    flags = " ".join(_flag(key, value) for key, value in GALLERY_RUN.items())
    classes = ", ".join(SHAPES[: GALLERY_DATA["classes"]])
    rows = [
        f"| {e['epoch']} | {e['train_loss']:.3f} | {100 * e['train_top1_err']:.1f} | {e['val_loss']:.3f} "
        f"| {100 * e['val_top1_err']:.1f} | {e['lr']:g} |"
        for e in epochs
    ]
    best = summary.get("best") or {}
    return [
        "## Training curves",
        "",
        f"A real run, made while this page was built: {GALLERY_DATA['train']} training and {GALLERY_DATA['val']} "
        f"validation images of each of {GALLERY_DATA['classes']} drawn shapes ({classes}; "
        f"`vggspec.data.samples.image_folder`), {GALLERY_DATA['size']}×{GALLERY_DATA['size']} pixels,",
        "",
        "![One drawn image of each class](gallery/shapes.png)",
        "",
        "and this spec,",
        "",
        '```vgg title="shapes.vgg"',
        GALLERY_SPEC.rstrip(),
        "```",
        "",
        "trained on the CPU through the Python API (`vggspec.run.train.train`) with the settings of",
        "",
        "```text",
        command_lines(f"vggspec train shapes.vgg --data shapes {flags} --out run"),
        "```",
        "",
        f"{_ending(summary)} The best epoch, {best.get('epoch', '-')}, had "
        f"{100 * best.get('val_top1_err', math.nan):.1f}% validation top-1 error (chance: "
        f"{100 * (1 - 1 / GALLERY_DATA['classes']):.0f}%). `RUN/metrics.jsonl`, a line per epoch:",
        "",
        "| epoch | training loss | training top-1 error (%) | validation loss | validation top-1 error (%) | lr |",
        "|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "`RUN/curves.png`, redrawn after every epoch: where the training and validation curves part is over- or "
        "under-fitting; the learning rate drops on a plateau.",
        "",
        "![The run's curves.png](gallery/curves.png)",
        "",
    ]


def _ending(summary: dict) -> str:
    """How the run ended, from RUN/summary.json: all its epochs, a plateau, or a stop and its message."""
    epochs, stopped = summary["epochs"], summary["stopped"]
    if stopped == "epochs":
        return f"It trained its {epochs} epochs in {summary['seconds']:.0f} s."
    if stopped == "plateau":
        return f"It stopped after {epochs} epochs, on a plateau with no drop of the learning rate left."
    return f"It stopped after {epochs} epochs: {summary.get('message') or stopped}."


def command_lines(command: str, width: int = 88) -> str:
    """A long command as a shell continues it: lines of at most ``width``, each but the last ending in ``\\``,
    broken before a flag."""
    lines, line = [], ""
    for word in re.split(r" (?=--)", command):
        if line and len(line) + len(word) + 3 > width:
            lines.append(line + " \\")
            line = "    " + word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join([*lines, line])


def _flag(key: str, value: object) -> str:
    """A training setting as train's flag (they are TrainConfig's fields: ``batch_size`` → ``--batch-size``)."""
    flag = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else f"--no-{flag[2:]}"
    return f"{flag} {value}"


def _contact_sheet(data: Path, classes: int, zoom: int = 4) -> bytes:
    """The first training image of each class side by side, enlarged ``zoom`` times (pixels kept sharp)."""
    import io

    from PIL import Image

    from vggspec.data.samples import SHAPES

    folders = [data / "train" / shape for shape in SHAPES[:classes]]
    images = [Image.open(sorted(folder.iterdir())[0]).convert("RGB") for folder in folders]
    width, height = images[0].size
    gap = 2
    sheet = Image.new("RGB", (len(images) * (width + gap) - gap, height), "white")
    for i, image in enumerate(images):
        sheet.paste(image, (i * (width + gap), 0))
    sheet = sheet.resize((sheet.width * zoom, sheet.height * zoom), Image.NEAREST)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()


@contextlib.contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """The run's notes (progress, files written) kept out of the build's output; warnings still shown."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)
