"""The paper's kind of table: every template at the base model's FLOPs, and the parameters each one needs.

Izquierdo-Cordova and Mayol-Cuevas compare filter-distribution templates at equal FLOPs and report how many
parameters each needs. This script does the same for VGG19 and ResNet50 at ImageNet resolution (3x224x224), with
``--divisor 1`` (widths are not rounded to multiples of 8), and writes the table as markdown. Everything is
analytic (no model is built or timed), so it takes seconds::

    .venv/bin/python examples/paper_table.py                      # print the markdown table
    .venv/bin/python examples/paper_table.py --out paper_table.md # and write it to a file
    .venv/bin/python examples/paper_table.py --models timm:vgg19,timm:resnet18 --divisor 8

VGG19 comes from torchvision: its classifier is three ``nn.Linear`` layers, which templates leave at their widths,
as in the paper. timm's ``vgg19`` computes fc6/fc7 as convolutions (``ConvMlp``), so with ``timm:vgg19`` they are
redistributed too and the parameter counts drop far more.

A second table does the same for the poster's NAS-Bench-101 networks on CIFAR-10 (3x32x32): the ResNet-like cell
and the benchmark's best cell (see ``examples/nasbench101.py``; needs ``pip install nasbench-pytorch``), at the
package's default stem (128) and stacks (3 of 3 cells), beside the parameter ratios the poster reports.
``--no-nasbench`` leaves it out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import redistribute

DEFAULT_MODELS = ("torchvision:vgg19", "timm:resnet50")
NASBENCH = Path(__file__).resolve().parent / "nasbench101.py"
# params / base at matched FLOPs for templates a-e, as the poster reports them
POSTER_NASBENCH = {
    "best": {"a": 0.848, "b": 0.199, "c": 0.320, "d": 0.532, "e": 0.269},
    "resnet_like": {"a": 0.858, "b": 0.205, "c": 0.296, "d": 0.546, "e": 0.270},
}


def table(models: list[str], templates: list[str], divisor: int) -> str:
    """The markdown table: one row per model and template."""
    lines = [
        "| model | template | shape | k | GFLOPs (MACs) | params (M) | params / base | act. memory (MB) |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for source in models:
        result = redistribute.compare(
            source, templates, "flops", divisor=divisor, input_size=(3, 224, 224), measure=False
        )
        for rec in result.records():
            alias = redistribute.get_template(rec["template"]).alias or "base trend"
            lines.append(
                f"| {source} | {rec['template']} | {alias} | {rec['k']:.4g} | {rec['flops'] / 1e9:.3f} "
                f"| {rec['params'] / 1e6:.2f} | {rec['params_ratio']:.3f} | {rec['memory'] / 2**20:.1f} |"
            )
    note = (
        f"\nFLOPs matched to the base within 0.5 % (multiply-accumulates, batch 1, 224x224); divisor {divisor}; "
        f"redistribute {redistribute.__version__}.\n"
    )
    return "\n".join(lines) + "\n" + note


def nasbench_table(templates: list[str], divisor: int) -> str:
    """The NAS-Bench-101 rows: params at matched FLOPs as ratios to the base, ours beside the poster's."""
    try:
        import nasbench_pytorch  # noqa: F401
    except ImportError:
        return "\nNAS-Bench-101 rows skipped: pip install nasbench-pytorch\n"
    lines = [
        "| NAS-Bench-101 cell | template | k | MFLOPs (MACs) | params (M) | params / base | poster |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for cell, poster in POSTER_NASBENCH.items():
        result = redistribute.compare(
            f"{NASBENCH}:{cell}", templates, "flops", divisor=divisor, input_size=(3, 32, 32), measure=False
        )
        for rec in result.records():
            theirs = poster.get(rec["template"])
            poster_cell = "" if theirs is None else f"{theirs:.3f}"
            lines.append(
                f"| {cell} | {rec['template']} | {rec['k']:.4g} | {rec['flops'] / 1e6:.0f} "
                f"| {rec['params'] / 1e6:.2f} | {rec['params_ratio']:.3f} | {poster_cell} |"
            )
    note = (
        "\nCIFAR-10 input (3x32x32), nasbench-pytorch's default stem (128) and stacks (3 x 3 cells); FLOPs matched "
        f"within 0.5 %; divisor {divisor}. See the README (NAS-Bench-101) for why the ratios differ from the poster's.\n"
    )
    return "\n" + "\n".join(lines) + "\n" + note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated model sources")
    parser.add_argument("--templates", default="base,a,b,c,d,e", help="comma-separated templates")
    parser.add_argument("--divisor", type=int, default=1, help="widths are multiples of this (the paper: 1)")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown to this file")
    parser.add_argument("--no-nasbench", action="store_true", help="leave out the NAS-Bench-101 rows")
    args = parser.parse_args()
    templates = args.templates.split(",")
    text = table(args.models.split(","), templates, args.divisor)
    if not args.no_nasbench:
        text += nasbench_table(templates, args.divisor)
    print(text, end="")
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
