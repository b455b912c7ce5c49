"""``mlstack base-image build`` and ``mlstack images``: base images and pipeline images.

Thin: parse, call runner's packaging library (imported inside the commands), render.
"""

from __future__ import annotations

import click

from provisioner.cli_runs import STACK_OPTION


@click.group("base-image")
def base_image() -> None:
    """Base images for pipeline images, built locally when no image hub is reachable."""


@base_image.command("build")
@click.option("--tag", default="mlstack/base:bookworm", show_default=True, help="Image to make.")
@click.option(
    "--mirror",
    default="http://deb.debian.org/debian",
    show_default=True,
    envvar="MLSTACK_DEBIAN_MIRROR",
    help="Debian mirror debootstrap downloads from ($MLSTACK_DEBIAN_MIRROR).",
)
@click.option("--suite", default="bookworm", show_default=True, help="Debian release.")
@click.option("--rebuild", is_flag=True, help="Build again even if the tag exists.")
def build(tag: str, mirror: str, suite: str, rebuild: bool) -> None:
    """Debootstrap Debian with python3 and `docker import` it (needs root and debootstrap).

    Use it with `components.orchestrator.base_image: mlstack/base:bookworm` in a stack spec.
    """
    from provisioner.render import LiveProgress
    from runner.base_image import build_base_image

    with LiveProgress(f"mlstack base-image build {tag}") as progress:
        result = build_base_image(
            tag, suite=suite, mirror=mirror, rebuild=rebuild, progress=progress
        )
    if result.built:
        click.echo(
            f"built {tag} ({result.image_id[:19]}) in {result.seconds:.0f}s: {result.reason}"
        )
    else:
        click.echo(f"{result.reason} ({result.image_id[:19]})")


@click.command()
@STACK_OPTION
@click.option("--pipeline", default=None, help="Only the images of this pipeline.")
@click.option("--limit", default=20, show_default=True, help="How many to show.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def images(stack: str | None, pipeline: str | None, limit: int, as_json: bool) -> None:
    """Pipeline images built or reused on a stack, and why each was (not) rebuilt."""
    from provisioner.cli_runs import metadata_client, stack_outputs
    from provisioner.render import print_json

    outputs = stack_outputs(stack)
    with metadata_client(outputs) as client:
        found = client.list_images(stack=outputs.stack, pipeline=pipeline, limit=limit)
    if as_json:
        print_json([i.model_dump(mode="json") for i in found])
        return
    if not found:
        click.echo(f"no images on stack {outputs.stack} yet; `mlstack run` builds them")
        return
    from rich.table import Table

    from provisioner.render import console

    colours = {"built": "green", "reused": "dim", "failed": "bold red"}
    table = Table(box=None, pad_edge=False)
    for col in ("when", "pipeline", "action", "tag", "time", "why"):
        table.add_column(col)
    for i in found:
        action = i.action.value
        table.add_row(
            i.created_at.isoformat()[:19],
            i.pipeline,
            f"[{colours.get(action, 'default')}]{action}[/]",
            i.tag,
            f"{i.seconds:.1f}s",
            i.reason,
        )
    console().print(table)


COMMANDS = [base_image, images]
