"""The local engine: the embedded default stack of real local services.

Converges idempotently: every service has a config hash; ``up`` starts what is missing or
dead, restarts what changed, stops what the spec dropped, and leaves the rest alone. Daemons
start in parallel; each must answer its health endpoint before ``up`` returns.
"""

from __future__ import annotations

import os
import secrets
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from provisioner.engines.base import Engine, PlannedChange, PlanResult, ServiceStatus
from provisioner.state import ServiceRecord, StackRecord, now
from provisioner.teardown import TeardownItem
from stacks.common.errors import ServiceFailed, UsageError, writing
from stacks.common.process import (
    DaemonFailed,
    free_port,
    http_ok,
    is_alive,
    port_in_use,
    spawn,
    stop,
    wait_healthy,
)
from stacks.common.tags import expiry_tag, stack_tags
from stacks.local import (
    artifact_store,
    deployer,
    metadata,
    orchestrator,
    pids,
    registry,
    secrets_backend,
    tracker,
)
from stacks.local.base import (
    FOLDER_ID_FILE,
    STACK_ID_ENV,
    STACK_ID_FILE,
    LocalContext,
    ServiceDef,
)
from stacks.outputs import StackOutputs
from stacks.spec import LocalStackSpec, StackSpec


class LocalEngine(Engine):
    """Runs the stack's services as supervised daemons under ``$MLSTACK_HOME/stacks/NAME``."""

    provider = "local"

    def stack_dir(self, name: str) -> Path:
        return self.registry.home / "stacks" / name

    def _context(self, spec: StackSpec) -> LocalContext:
        assert isinstance(spec, LocalStackSpec)
        return LocalContext(spec=spec, stack_dir=self.stack_dir(spec.name))

    def _services(self, ctx: LocalContext, token: str, folder: str) -> list[ServiceDef]:
        found = [
            artifact_store.flavor_module(ctx).service(ctx),
            secrets_backend.service(ctx),
            tracker.service(ctx),
            metadata.service(ctx, token),
            orchestrator.service(ctx),
            deployer.service(ctx, token),
            registry.service(ctx),
        ]
        services = [s for s in found if s is not None]
        for svc in services:  # a daemon started in a since-deleted folder is not this one
            if svc.is_process:
                svc.identity["folder"] = folder
        return services

    def _token(self, ctx: LocalContext) -> str:
        """The metadata token as the secrets backend holds it now ('' when it has none)."""
        from stacks.common.fernet import SecretStoreError

        try:
            return secrets_backend.store(ctx).get(metadata.TOKEN_SECRET) or ""
        except (SecretStoreError, OSError):
            return ""

    # -- plan ---------------------------------------------------------------------------

    def _plan(
        self, spec: StackSpec, record: StackRecord | None, token: str | None = None
    ) -> PlanResult:
        ctx = self._context(spec)
        current = record.services if record and record.status != "destroyed" else {}
        wanted_services = self._services(
            ctx, self._token(ctx) if token is None else token, ctx.folder_id()
        )
        changes = [self._diff(svc, current.get(svc.name)) for svc in wanted_services]
        wanted = {c.resource for c in changes}
        changes += [
            PlannedChange(
                component=old.component,
                resource=name,
                action="delete",
                reason="no longer in the spec",
            )
            for name, old in current.items()
            if name not in wanted
        ]
        return PlanResult(stack=spec.name, provider="local", changes=changes)

    def _diff(self, svc: ServiceDef, old: ServiceRecord | None) -> PlannedChange:
        kind = "process" if svc.is_process else "folder"
        change = PlannedChange(
            component=svc.component, resource=svc.name, action="create", type=kind
        )
        change.details = {k: v for k, v in svc.config.items() if not k.endswith("_hash")}
        if svc.fixed_port:
            change.details["port"] = svc.fixed_port
        if old is None:
            change.reason = "not running"
        elif old.config_hash != svc.config_hash():
            change.action, change.reason = "restart", "settings changed"
        elif svc.is_process and not is_alive(old.pid, old.create_time):
            change.action, change.reason = "start", f"process {old.pid} is gone"
        elif svc.is_process and not self._healthy(old):
            change.action, change.reason = "restart", f"process {old.pid} fails its health check"
        elif not svc.is_process and svc.check and (problem := svc.check()):
            change.action, change.reason = "start", problem
        else:
            change.action, change.reason = "unchanged", "running with the same settings"
        return change

    @staticmethod
    def _healthy(old: ServiceRecord) -> bool:
        """Liveness is health, not a pid: two tries, so one slow answer is not a restart."""
        url = f"http://127.0.0.1:{old.port}{old.health_path}"
        return any(http_ok(url, timeout=2.0) for _ in range(2))

    # -- up -----------------------------------------------------------------------------

    def _up(
        self, spec: StackSpec, record: StackRecord
    ) -> tuple[list[str], list[str], StackOutputs]:
        # Everything the stack keeps on disk is private to the user: folders 0700, files 0600.
        old_umask = os.umask(0o077)
        try:
            return self._up_private(spec, record)
        finally:
            os.umask(old_umask)

    def _up_private(
        self, spec: StackSpec, record: StackRecord
    ) -> tuple[list[str], list[str], StackOutputs]:
        ctx = self._context(spec)
        with writing(ctx.stack_dir):
            ctx.stack_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            ctx.stack_dir.chmod(0o700)
        # What a killed predecessor spawned and no record owns is stopped before anything
        # starts (two MLflows on one SQLite file corrupt it). The folder's old stack id
        # counts too: state.json may have been lost since.
        self._stop_strays(ctx, record, keep_recorded=True)
        # Mark what belongs to this stack id, so `mlstack sweep --stack-id` finds it stateless.
        with writing(ctx.stack_dir / STACK_ID_FILE):
            (ctx.stack_dir / STACK_ID_FILE).write_text(record.stack_id, encoding="utf-8")
        self._stack_id = record.stack_id
        with writing(ctx.path(FOLDER_ID_FILE)):
            folder = ctx.folder_id(create=True)
        # The secrets backend comes first: the metadata server's token lives in it.
        store_svc = secrets_backend.service(ctx)
        assert store_svc.prepare is not None
        with writing(ctx.path("secrets")):
            store_svc.prepare()
        store = secrets_backend.store(ctx)
        token = store.get(metadata.TOKEN_SECRET)
        if token is None:
            token = secrets.token_urlsafe(32)
            store.set(metadata.TOKEN_SECRET, token)

        services = {s.name: s for s in self._services(ctx, token, folder)}
        plan = self._plan(spec, record, token)
        changed: list[str] = []
        unchanged: list[str] = []
        for change in plan.changes:
            if change.action == "delete":
                old = record.services.pop(change.resource)
                self.progress.update(change.resource, "stopping")
                stop(old.pid, old.create_time)
                self.progress.update(change.resource, "stopped", change.reason)
                changed.append(change.resource)
            elif change.action == "unchanged":
                unchanged.append(change.resource)
                self.progress.update(change.resource, "unchanged", change.reason)
            else:
                changed.append(change.resource)
        self.registry.save(record)

        to_start = [services[name] for name in changed if name in services]
        reasons = {c.resource: c.reason for c in plan.changes}
        self._converge(ctx, record, to_start, reasons)
        return changed, unchanged, self._outputs(ctx, record)

    def _stop_strays(self, ctx: LocalContext, record: StackRecord, keep_recorded: bool) -> None:
        """Stop the stack's processes that no record owns (all of them without
        ``keep_recorded``): recorded live services and recorded endpoints are owned."""
        keep: set[int] = set()
        if keep_recorded:
            keep = {
                s.pid for s in record.services.values() if s.pid and is_alive(s.pid, s.create_time)
            }
            keep |= deployer.endpoint_pids(ctx.stack_dir)
        ids = {record.stack_id} | {i for i in [pids.folder_stack_id(ctx.stack_dir)] if i}
        stopped = pids.stop_strays(ctx.stack_dir, ids, keep)
        if stopped:
            self.progress.update(
                "leftovers", "stopped", f"pid {', '.join(map(str, stopped))} (no record owned it)"
            )

    def _converge(
        self,
        ctx: LocalContext,
        record: StackRecord,
        todo: list[ServiceDef],
        reasons: dict[str, str] | None = None,
    ) -> None:
        reasons = reasons or {}
        for svc in todo:  # stop changed or stale ones first, keeping their port if automatic
            old = record.services.get(svc.name)
            if old and svc.is_process:
                reason = reasons.get(svc.name, "settings changed")
                if is_alive(old.pid, old.create_time):
                    self.progress.update(svc.name, "stopping", reason)
                else:
                    self.progress.update(svc.name, "restarting", reason)
                stop(old.pid, old.create_time)
                pids.forget(ctx.stack_dir, svc.name)
        passive = [s for s in todo if not s.is_process]
        for svc in passive:
            self.progress.update(svc.name, "starting")
            if svc.prepare:
                with writing(ctx.stack_dir):
                    svc.prepare()
            problem = svc.check() if svc.check else None
            if problem:
                raise ServiceFailed(f"{svc.name}: {problem}")
            record.services[svc.name] = ServiceRecord(
                name=svc.name, component=svc.component, config_hash=svc.config_hash()
            )
            self.progress.update(svc.name, "ready")
        processes = [s for s in todo if s.is_process]
        if not processes:
            return
        ports = {s.name: self._port_for(s, record.services.get(s.name)) for s in processes}
        with ThreadPoolExecutor(max_workers=len(processes)) as pool:
            futures = {
                s.name: pool.submit(self._start_one, ctx, s, ports[s.name]) for s in processes
            }
            errors: list[BaseException] = []
            for name, future in futures.items():
                try:
                    record.services[name] = future.result()
                except BaseException as exc:
                    record.services.pop(name, None)
                    errors.append(exc)
                self.registry.save(record)  # each healthy one recorded as soon as known
        if errors:
            raise errors[0]

    def _port_for(self, svc: ServiceDef, old: ServiceRecord | None) -> int:
        if svc.fixed_port:
            if port_in_use(svc.fixed_port):
                raise UsageError(
                    f"components.{svc.component}.port: port {svc.fixed_port} is in use by"
                    " another process",
                    "choose another port, or remove the setting to pick a free one",
                )
            return svc.fixed_port
        if old and old.port and not port_in_use(old.port):
            return old.port
        return free_port()

    def _start_one(self, ctx: LocalContext, svc: ServiceDef, port: int) -> ServiceRecord:
        assert svc.argv is not None
        self.progress.update(svc.name, "starting", f"port {port}")
        if svc.prepare:
            with writing(ctx.stack_dir):
                svc.prepare()
        log = ctx.path("logs", f"{svc.name}.log")
        try:
            env = {**svc.env, STACK_ID_ENV: getattr(self, "_stack_id", "")}
            daemon = spawn(svc.argv(port), log=log, cwd=ctx.stack_dir, env=env)
        except OSError as exc:  # a missing program: say which and how to get it
            self.progress.update(svc.name, "failed", str(exc))
            raise ServiceFailed(f"{svc.name} cannot start: {exc}") from None
        # Intent before health: a kill from here on leaves the pid in the stack's folder.
        try:
            with writing(ctx.path(pids.PIDS, f"{svc.name}.json")):
                pids.write(ctx.stack_dir, svc.name, daemon, port=port, log=str(log))
        except BaseException:
            stop(daemon.pid, daemon.create_time)  # unrecorded, it would outlive us
            raise
        try:
            wait_healthy(
                svc.name,
                daemon,
                f"http://127.0.0.1:{port}{svc.health_path}",
                log,
                svc.start_timeout,
            )
        except DaemonFailed as exc:
            self.progress.update(svc.name, "failed", exc.headline.splitlines()[0])
            raise ServiceFailed(exc.headline, exc.hint) from None
        self.progress.update(svc.name, "healthy")
        return ServiceRecord(
            name=svc.name,
            component=svc.component,
            config_hash=svc.config_hash(),
            port=port,
            health_path=svc.health_path,
            pid=daemon.pid,
            create_time=daemon.create_time,
            log=str(log),
            started_at=now(),
        )

    def _outputs(self, ctx: LocalContext, record: StackRecord) -> StackOutputs:
        spec = ctx.spec

        def port_of(name: str) -> int | None:
            svc = record.services.get(name)
            return svc.port if svc else None

        tracker_svc = record.services.get("tracker")
        meta = record.services["metadata"]
        assert meta.port is not None
        return StackOutputs(
            stack=spec.name,
            stack_id=record.stack_id,
            provider="local",
            tags=stack_tags(
                name=spec.name,
                stack_id=record.stack_id,
                owner=spec.owner,
                expires_at=expiry_tag(record.expires_at),
                extra=spec.tags,
            ),
            artifact_store=artifact_store.flavor_module(ctx).outputs(ctx),
            container_registry=registry.outputs(ctx, port_of("registry")),
            orchestrator=orchestrator.outputs(ctx),
            secrets=secrets_backend.outputs(ctx),
            tracker=tracker.outputs(ctx, tracker_svc.port if tracker_svc else None),
            deployer=deployer.outputs(ctx, port_of("deployer")),
            metadata=metadata.outputs(meta.port),
        )

    # -- recover --------------------------------------------------------------------------

    def recover(self, name: str) -> list[int]:
        """After a crash or a lost state.json: stop the stack's daemons no record owns.

        Works from the stack's folder alone. With a readable record its live services are
        kept; without one (state.json corrupted, moved aside or lost) every daemon of the
        folder is stopped, its data kept, so the next ``up`` starts clean on it.
        """
        from stacks.common.errors import StateError

        with self.registry.stack_lock(name):
            folder = self.stack_dir(name)
            try:
                record = self.registry.get(name)
            except StateError:
                record = None
            ids = {i for i in [pids.folder_stack_id(folder)] if i}
            keep: set[int] = set()
            if record is not None and record.status != "destroyed":
                ids.add(record.stack_id)
                keep = {
                    s.pid
                    for s in record.services.values()
                    if s.pid and is_alive(s.pid, s.create_time)
                }
                keep |= deployer.endpoint_pids(folder)
            self.progress.update("daemons", "stopping", f"of {folder}")
            stopped = pids.stop_strays(folder, ids, keep)
            self.progress.update("daemons", "stopped", f"{len(stopped)} stopped")
            return stopped

    # -- down and status ----------------------------------------------------------------

    def _drain(self, record: StackRecord) -> list[TeardownItem]:
        from provisioner.cost.drain import drain_local

        return drain_local(record, self.stack_dir(record.name), self.progress)

    def _leftovers(
        self, record: StackRecord, after: Literal["drain", "destroy"]
    ) -> list[TeardownItem]:
        from provisioner.cost.drain import local_leftovers

        return local_leftovers(record, self.stack_dir(record.name), after)

    def _down(self, record: StackRecord) -> tuple[list[str], list[str]]:
        stopped: list[str] = []
        processes = [s for s in record.services.values() if s.pid]

        def stop_one(svc: ServiceRecord) -> str:
            self.progress.update(svc.name, "stopping")
            stop(svc.pid, svc.create_time)
            self.progress.update(svc.name, "stopped")
            return svc.name

        if processes:
            with ThreadPoolExecutor(max_workers=len(processes)) as pool:
                stopped += list(pool.map(stop_one, processes))
        ctx = self._context(record.spec)
        self._stop_strays(ctx, record, keep_recorded=False)  # what a killed up spawned
        kept: list[str] = []
        store = artifact_store.flavor_module(ctx)
        if hasattr(store, "teardown"):
            stopped += store.teardown(ctx)
        custom = getattr(record.spec.components.artifact_store, "path", None)
        if custom:
            kept.append(f"artifact store folder {custom} (set in the spec; not deleted)")
        elif record.spec.flavor_of("artifact_store") != "local":
            bucket = getattr(record.spec.components.artifact_store, "bucket", "")
            if not getattr(record.spec.components.artifact_store, "create", False):
                kept.append(f"artifact store bucket {bucket} (not created by the stack)")
        folder = self.stack_dir(record.name)
        if folder.exists():
            shutil.rmtree(folder)
        self.progress.update("data", "stopped", f"removed {folder}")
        return [*stopped, "artifact_store", "secrets"], kept

    def _status(self, record: StackRecord) -> list[ServiceStatus]:
        result: list[ServiceStatus] = []
        for svc in record.services.values():
            if svc.pid is None:
                folder_ok = self.stack_dir(record.name).is_dir()
                result.append(
                    ServiceStatus(
                        name=svc.name,
                        component=svc.component,
                        state="ready" if folder_ok else "missing",
                    )
                )
                continue
            url = f"http://127.0.0.1:{svc.port}"
            if not is_alive(svc.pid, svc.create_time):
                state, detail = "stopped", f"process {svc.pid} is gone; run `mlstack up` again"
            elif http_ok(url + svc.health_path):
                state, detail = "healthy", ""
            else:
                state, detail = "unhealthy", "health check failed"
            result.append(
                ServiceStatus(
                    name=svc.name,
                    component=svc.component,
                    state=state,
                    pid=svc.pid,
                    port=svc.port,
                    url=url,
                    detail=detail,
                )
            )
        return result
