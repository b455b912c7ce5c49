"""``mlstack logs``, and finding a run by its id (or a prefix) on whichever up stack holds it.

Imported by the CLI only; everything heavy is imported inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from stacks.common.errors import UsageError

if TYPE_CHECKING:
    from runner.metadata.client import MetadataClient
    from stacks.outputs import StackOutputs


RUN_STACK_OPTION = click.option(
    "--stack",
    "stack",
    default=None,
    help="Only look on this stack (a run id is found on any up stack; this settles a prefix"
    " that runs of several stacks share).",
)


def find_run(ref: str, stack: str | None) -> tuple[StackOutputs, Any]:
    """The stack outputs and the run that ``ref`` (a run id or a prefix of one) names.

    Every up stack is searched, since a run id is unique; ``stack`` limits the search to
    one, which is how a prefix matching runs of several stacks is settled.
    """
    from provisioner.cli_runs import metadata_client, stack_outputs
    from runner.errors import MetadataError

    names = [stack] if stack else _up_stacks()
    found: list[tuple[StackOutputs, str]] = []
    unreachable: list[str] = []
    for name in names:
        try:
            outputs = stack_outputs(name)
            with metadata_client(outputs) as client:
                found += [(outputs, run_id) for run_id in _matching_runs(client, name, ref)]
        except MetadataError as exc:
            if stack:
                raise
            unreachable.append(f"{name} ({exc.headline})")
    stacks = sorted({o.stack for o, _ in found})
    if len(found) == 1:
        outputs, run_id = found[0]
        with metadata_client(outputs) as client:
            return outputs, client.get_run(run_id)
    where = f"stack {stack}" if stack else f"any up stack ({', '.join(names)})"
    if not found:
        skipped = f"; not reachable: {', '.join(unreachable)}" if unreachable else ""
        raise UsageError(f"no run on {where} matches {ref!r}{skipped}", "see `mlstack runs`")
    if len(stacks) > 1:
        raise UsageError(
            f"runs of several stacks match {ref!r}: {', '.join(stacks)}",
            "choose one with --stack, or give more of the run id",
        )
    raise UsageError(
        f"{len(found)} runs on stack {stacks[0]} match {ref!r}", "give more of the run id"
    )


def _up_stacks() -> list[str]:
    from provisioner.state import StateRegistry

    live = [r.name for r in StateRegistry().list() if r.status != "destroyed"]
    if not live:
        raise UsageError("no stack is up", "run `mlstack up SPEC_FILE` first")
    return live


def _matching_runs(client: MetadataClient, stack: str, ref: str) -> list[str]:
    """Ids of the runs of ``stack`` that ``ref`` names (a whole id, or a prefix)."""
    from runner.errors import MetadataError

    if len(ref) >= 32:
        try:
            return [client.get_run(ref).id]
        except MetadataError as exc:
            if "not found" in exc.headline:
                return []
            raise
    return [r.id for r in client.list_runs(stack=stack, limit=500) if r.id.startswith(ref)]


@click.command()
@click.argument("run_id")
@click.argument("step", required=False)
@RUN_STACK_OPTION
@click.option("--follow", "-f", is_flag=True, help="Stream the steps' logs until they end.")
@click.option(
    "--json", "as_json", is_flag=True, help="Each step's attempts and their text, as JSON."
)
def logs(run_id: str, step: str | None, stack: str | None, follow: bool, as_json: bool) -> None:
    """Print a run's step logs (stdout and stderr), from the artifact store.

    With --follow, a running step's log is streamed as it grows, until the step ends (for a
    whole run, each step in turn until the run ends).
    """
    from provisioner.cli_runs import metadata_client
    from runner.entrypoint import artifact_store_for

    if follow and as_json:
        raise UsageError("--json and --follow do not go together", "drop one of them")
    outputs, detail = find_run(run_id, stack)
    if step and step not in {s.name for s in detail.steps} and not follow:
        names = ", ".join(s.name for s in detail.steps)
        raise UsageError(f"run {detail.id[:12]} has no step {step!r}", f"steps: {names}")
    store = artifact_store_for(outputs)
    if as_json:
        from provisioner.render import print_json

        wanted = [s for s in detail.steps if step is None or s.name == step]
        steps = [_step_log_data(outputs, store, detail.id, s) for s in wanted]
        print_json({"run_id": detail.id, "stack": outputs.stack, "steps": steps})
        return
    if follow:
        with metadata_client(outputs) as client:
            _follow(client, store, detail.id, step)
        return
    for s in detail.steps:
        if step is not None and s.name != step:
            continue
        if step is None:
            click.echo(f"===== {s.name} ({s.status.value}) =====")
        every = _attempt_logs(store, detail.id, s)
        kept = [u for u in every if store.exists(u)]
        if outputs.orchestrator.kind == "aws_batch" and len(kept) < len(every):
            _cloudwatch_fallback(outputs, store, detail.id, s, every)
        elif kept:
            text = "".join(store.read_text(uri) for uri in kept)
            click.echo(text if text else "(the step printed nothing)", nl=not text)
        elif s.status.value == "cached":
            click.echo("(cached: the step did not run; see the run it came from)")
        else:
            click.echo("(no log recorded)")


def _cloudwatch_fallback(
    outputs: StackOutputs, store: Any, run_id: str, step: Any, uris: list[str]
) -> None:
    """A Batch step whose log the artifact store lacks (its container died before writing
    it): each attempt from the store where it is there, else its job's CloudWatch Logs."""
    from runner.cloudwatch_logs import step_job_logs

    jobs = step_job_logs(outputs, run_id, step.name, step.id)
    for n in range(max(len(uris), len(jobs), 1)):
        uri = uris[n] if n < len(uris) else None
        if uri and store.exists(uri):
            click.echo(store.read_text(uri), nl=False)
            continue
        if n >= len(jobs):
            click.echo(
                f"(no log of attempt {n + 1}: not in the artifact store, no Batch job found)"
            )
            continue
        job = jobs[n]
        if job.lines is None:
            where = f"stream {job.stream}" if job.stream else "no log stream"
            click.echo(f"(no log of attempt {n + 1}: not in the artifact store; job {job.job_id}"
                       f" has {where} in CloudWatch Logs)")  # fmt: skip
            continue
        click.echo(
            f"===== attempt {n + 1}: from CloudWatch Logs {job.group} {job.stream}"
            f" (job {job.job_id}); the artifact store holds no log of it ====="
        )
        click.echo("\n".join(job.lines) if job.lines else "(the stream is empty)")


def _step_log_data(outputs: StackOutputs, store: Any, run_id: str, step: Any) -> dict[str, Any]:
    """``{name, status, attempts: [{attempt, source, uri, text}]}`` for ``logs --json``:
    each attempt's text from the artifact store, else (a Batch job) from CloudWatch Logs;
    ``source`` and ``text`` are null for an attempt whose log is in neither."""
    uris = _attempt_logs(store, run_id, step)
    missing = [u for u in uris if not store.exists(u)]
    jobs: list[Any] = []
    if outputs.orchestrator.kind == "aws_batch" and (missing or not uris):
        from runner.cloudwatch_logs import step_job_logs

        jobs = step_job_logs(outputs, run_id, step.name, step.id)
    attempts: list[dict[str, Any]] = []
    for n in range(max(len(uris), len(jobs))):
        uri = uris[n] if n < len(uris) else None
        entry: dict[str, Any] = {"attempt": n + 1, "source": None, "uri": uri, "text": None}
        if uri and uri not in missing:
            entry |= {"source": "artifact_store", "text": store.read_text(uri)}
        elif n < len(jobs) and jobs[n].lines is not None:
            job = jobs[n]
            text = "".join(f"{line}\n" for line in job.lines)
            where = f"cloudwatch:{job.group}/{job.stream}"
            entry |= {"source": "cloudwatch_logs", "text": text, "uri": where}
            entry["job_id"] = job.job_id
        attempts.append(entry)
    return {"name": step.name, "status": step.status.value, "attempts": attempts}


def _attempt_logs(store: Any, run_id: str, step: Any) -> list[str]:
    """The log URIs of every attempt of ``step``, first to last (see ArtifactStore.log_uri)."""
    if not step.log_uri:
        return []
    attempts = int(step.spec.get("attempt") or 0)
    earlier = [store.log_uri(run_id, step.name, n) for n in range(1, attempts)]
    return [uri for uri in earlier if uri != step.log_uri] + [step.log_uri]


def _follow(client: MetadataClient, store: Any, run_id: str, step: str | None) -> None:
    """Stream each wanted step's log in turn (waiting for it to start) until it ends."""
    import sys
    import time

    from runner.logs import TERMINAL, follow

    shown: set[str] = set()
    settle = {"settle": 0.0} if store.local else {}  # file://: the step writes there itself
    while True:
        detail = client.get_run(run_id)
        ended = detail.status.value in ("completed", "failed", "cancelled")
        wanted = [s for s in detail.steps if step is None or s.name == step]
        pending = [s for s in wanted if s.name not in shown]
        if not pending:
            if step and not wanted and ended:
                names = ", ".join(s.name for s in detail.steps)
                raise UsageError(f"run {run_id[:12]} has no step {step!r}", f"steps: {names}")
            if ended or (step and wanted):
                return
            time.sleep(0.5)  # the next step is not recorded until it starts
            continue
        current = pending[0]
        shown.add(current.name)
        if step is None:
            click.echo(f"===== {current.name} =====")
        if current.status.value in ("cached", "skipped"):
            click.echo(f"({current.status.value})")
            continue

        def state(step_id: str = current.id) -> tuple[str | None, str]:
            record = client.get_step(step_id)
            if record.status.value in TERMINAL:
                return record.log_uri, record.status.value
            run = client.get_run(run_id).status.value
            # A run that ended (or whose driver died) leaves no step running.
            return record.log_uri, "cancelled" if run in ("failed", "cancelled") else "running"

        for text in follow(store, state, **settle):
            sys.stdout.write(text)
            sys.stdout.flush()


COMMANDS = [logs]
