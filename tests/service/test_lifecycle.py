"""The pipeline lifecycle through the dispatcher on a real project and metadata store:
versions, environments, approvals, the audit log, bundles and git sync."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import msgspec
import pytest

from klaw.errors import (
    ApprovalError,
    GraphError,
    PromotionError,
    ReadOnlyVersionError,
    VersionBundleError,
    VersionNotFoundError,
)
from klaw.protocol import (
    ApproveRequest,
    CheckDraft,
    CreateVersion,
    DeleteVersion,
    DemoteVersion,
    DiffVersions,
    DraftReply,
    ExportVersion,
    GetSource,
    GetVersion,
    ImportVersion,
    ListApprovals,
    ListAudit,
    ListVersions,
    PromoteVersion,
    RejectRequest,
    RetireVersion,
    SyncGit,
)
from klaw.service.dispatcher import Dispatcher
from klaw.service.lifecycle import Caller
from klaw.service.orchestrator import Orchestrator

SQL = """-- name: totals
SELECT 1 AS user_id, 10 AS total;

-- name: big
SELECT user_id FROM totals WHERE total > 5;
"""
ALICE = Caller("token:a1 (alice)", "operator")
BOB = Caller("token:b2 (bob)", "approver")
CAROL = Caller("token:c3 (carol)", "approver")
VIEWER = Caller("token:v4 (vic)", "viewer")


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def make_project(root: Path, lifecycle: str = "") -> Path:
    write(
        root,
        {
            "klaw.toml": f'[project]\nname = "lc"\nworkflow_dirs = ["workflows"]\n{lifecycle}',
            "workflows/sales/config.yaml": "engine: duckdb\ndescription: sales\n",
            "workflows/sales/workflow.sql": SQL,
        },
    )
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "p")


@pytest.fixture
def dispatcher(project: Path) -> Any:
    orch = Orchestrator.open(project)
    yield Dispatcher(orch)
    orch.close()


def run(d: Dispatcher, cmd: Any, who: Caller = ALICE) -> Any:
    return d.execute(cmd, caller=who)


def test_same_content_makes_no_new_version(dispatcher: Dispatcher, project: Path) -> None:
    first = run(dispatcher, CreateVersion(workflow="sales", message="first"))
    assert first.created and first.version.version == 1
    assert first.version.environments == ("dev",) and first.version.stage == "dev"
    assert first.version.author == ALICE.subject and first.version.stages == 2
    again = run(dispatcher, CreateVersion(workflow="sales", message="again"))
    assert not again.created and again.version.version == 1
    (project / "workflows/sales/workflow.sql").write_text(SQL + "\n-- name: more\nSELECT 2;\n")
    second = run(dispatcher, CreateVersion(workflow="sales", message="more"))
    assert second.created and second.version.version == 2
    listed = run(dispatcher, ListVersions(workflow="sales"))
    assert [v.version for v in listed.versions] == [2, 1]  # newest first
    assert [(d.environment, d.version) for d in listed.deployments] == [("dev", 2)]
    detail = run(dispatcher, GetVersion(workflow="sales", number=1)).detail
    assert detail.files["workflow.sql"] == SQL and "config.yaml" in detail.files
    assert {s["name"] for s in detail.graph["stages"]} == {"totals", "big"}
    changed = run(dispatcher, DiffVersions(workflow="sales", a=1, b=2))
    assert changed.stages_added == ("more",) and changed.stages_removed == ()
    [file] = changed.files
    assert (
        file.path == "workflow.sql" and file.change == "changed" and "+-- name: more" in file.diff
    )
    source = run(dispatcher, GetSource(workflow="sales"))
    assert source.version == 2 and source.kind == "folder"


def test_promotion_path_with_approvals_and_audit(dispatcher: Dispatcher) -> None:
    run(dispatcher, CreateVersion(workflow="sales", message="v1"))
    qa = run(dispatcher, PromoteVersion(workflow="sales", number=1, to="qa"))
    assert qa.request is None and qa.deployment.environment == "qa"
    with pytest.raises(PromotionError, match="cannot skip to prod"):
        run(dispatcher, PromoteVersion(workflow="sales", number=1, to="prod"))
    asked = run(dispatcher, PromoteVersion(workflow="sales", number=1, to="uat"))
    assert asked.deployment is None and asked.request.state == "pending"
    request_id = asked.request.request_id
    with pytest.raises(ApprovalError, match="asked for this promotion"):
        run(dispatcher, ApproveRequest(request_id=request_id), Caller(ALICE.subject, "admin"))
    with pytest.raises(ApprovalError, match="needs the approver role"):
        run(dispatcher, ApproveRequest(request_id=request_id), VIEWER)
    pending = run(dispatcher, ListApprovals(workflow="sales"))
    assert [r.request_id for r in pending.requests] == [request_id]
    done = run(dispatcher, ApproveRequest(request_id=request_id, comment="ok"), BOB)
    assert done.request.state == "approved" and done.deployment.environment == "uat"
    assert done.request.decisions[0].comment == "ok"
    with pytest.raises(ApprovalError, match="already approved"):
        run(dispatcher, ApproveRequest(request_id=request_id), CAROL)
    versions = run(dispatcher, ListVersions(workflow="sales"))
    assert versions.versions[0].stage == "uat" and versions.versions[0].read_only
    demoted = run(dispatcher, DemoteVersion(workflow="sales"))
    assert demoted.deployment.environment == "qa"
    audit = run(dispatcher, ListAudit(workflow="sales")).entries
    actions = [e.action for e in reversed(audit)]
    assert actions == [
        "version.created",
        "promoted",
        "promotion.requested",
        "promotion.approved",
        "promoted",
        "demoted",
    ]
    assert audit[0].actor == ALICE.subject and audit[2].actor == BOB.subject
    page = run(dispatcher, ListAudit(workflow="sales", limit=2, before=audit[1].seq)).entries
    assert [e.seq for e in page] == [audit[2].seq, audit[3].seq]


def test_rejected_request_is_not_promoted_anyway(dispatcher: Dispatcher) -> None:
    run(dispatcher, CreateVersion(workflow="sales"))
    run(dispatcher, PromoteVersion(workflow="sales", number=1, to="qa"))
    asked = run(dispatcher, PromoteVersion(workflow="sales", number=1, to="uat"))
    rejected = run(
        dispatcher, RejectRequest(request_id=asked.request.request_id, comment="no tests"), BOB
    )
    assert rejected.request.state == "rejected" and rejected.deployment is None
    with pytest.raises(PromotionError, match="rejected by token:b2 \\(bob\\): 'no tests'"):
        run(dispatcher, PromoteVersion(workflow="sales", number=1, to="uat"))
    with pytest.raises(ApprovalError, match="already rejected"):
        run(dispatcher, ApproveRequest(request_id=asked.request.request_id), CAROL)
    deployed = run(dispatcher, ListVersions(workflow="sales")).deployments
    assert {d.environment for d in deployed} == {"dev", "qa"}


def test_read_only_versions_refuse_change(dispatcher: Dispatcher) -> None:
    run(dispatcher, CreateVersion(workflow="sales"))
    run(dispatcher, PromoteVersion(workflow="sales", number=1, to="qa"))
    asked = run(dispatcher, PromoteVersion(workflow="sales", number=1, to="uat"))
    run(dispatcher, ApproveRequest(request_id=asked.request.request_id), BOB)
    asked = run(dispatcher, PromoteVersion(workflow="sales", number=1, to="prod"))
    run(dispatcher, ApproveRequest(request_id=asked.request.request_id), BOB)
    with pytest.raises(ReadOnlyVersionError, match="v1 is in prod and read-only"):
        run(dispatcher, DeleteVersion(workflow="sales", number=1))
    bundle = run(dispatcher, ExportVersion(workflow="sales", number=1)).bundle
    files = {**bundle["files"], "workflow.sql": SQL + "\n-- name: x\nSELECT 3;\n"}
    from klaw.service.versions import content_hash

    edited = {**bundle, "files": files, "hash": content_hash("sales", "folder", files)}
    with pytest.raises(ReadOnlyVersionError, match="cannot be replaced by an import"):
        run(dispatcher, ImportVersion(bundle=edited, replace=True))
    with pytest.raises(ApprovalError, match="needs the approver role"):
        run(dispatcher, RetireVersion(workflow="sales", number=1))
    retired = run(dispatcher, RetireVersion(workflow="sales", number=1), BOB)
    assert retired.version.stage == "retired"
    assert run(dispatcher, ListVersions(workflow="sales")).deployments == []
    with pytest.raises(PromotionError, match="retired"):
        run(dispatcher, PromoteVersion(workflow="sales", number=1, to="qa"))


def test_approval_policy_from_klaw_toml(tmp_path: Path) -> None:
    policy = '\n[lifecycle.environments.prod]\napprovals = 2\napprovers = ["bob", "carol"]\n'
    orch = Orchestrator.open(make_project(tmp_path / "p", policy))
    d = Dispatcher(orch)
    try:
        run(d, CreateVersion(workflow="sales"))
        run(d, PromoteVersion(workflow="sales", number=1, to="qa"))
        asked = run(d, PromoteVersion(workflow="sales", number=1, to="uat"))
        run(d, ApproveRequest(request_id=asked.request.request_id), CAROL)
        asked = run(d, PromoteVersion(workflow="sales", number=1, to="prod"))
        assert asked.request.required == 2
        rid = asked.request.request_id
        with pytest.raises(ApprovalError, match="not an approver of prod"):
            run(d, ApproveRequest(request_id=rid), Caller("token:d (dave)", "approver"))
        one = run(d, ApproveRequest(request_id=rid), BOB)
        assert one.request.state == "pending" and one.deployment is None
        two = run(d, ApproveRequest(request_id=rid), CAROL)
        assert two.request.state == "approved" and two.deployment.environment == "prod"
    finally:
        orch.close()


def test_two_promotions_at_once_one_wins(dispatcher: Dispatcher) -> None:
    run(dispatcher, CreateVersion(workflow="sales"))
    outcomes: list[Any] = []
    start = threading.Barrier(2)

    def promote() -> None:
        start.wait()
        try:
            outcomes.append(run(dispatcher, PromoteVersion(workflow="sales", number=1, to="qa")))
        except PromotionError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=promote) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [o for o in outcomes if isinstance(o, PromotionError)]
    assert len(errors) == 1 and "already in qa" in errors[0].message
    promoted = [e for e in run(dispatcher, ListAudit()).entries if e.action == "promoted"]
    assert len(promoted) == 1


def test_bundle_round_trip_signed_and_tampered(dispatcher: Dispatcher, tmp_path: Path) -> None:
    from klaw.service import bundles

    run(dispatcher, CreateVersion(workflow="sales", message="ship it"))
    raw = run(dispatcher, ExportVersion(workflow="sales", number=1)).bundle
    key = tmp_path / "signing.pem"
    public = bundles.keygen(key)
    signed = msgspec.to_builtins(bundles.sign(bundles.read(raw), key))
    other = make_project(tmp_path / "other", f'\n[lifecycle]\ntrusted_keys = ["{public}"]\n')
    orch = Orchestrator.open(other)
    d = Dispatcher(orch)
    try:
        with pytest.raises(VersionBundleError, match="not signed"):
            run(d, ImportVersion(bundle=raw))
        made = run(d, ImportVersion(bundle=signed))
        assert made.created and made.version.version == 1 and made.version.message == "ship it"
        assert not run(d, ImportVersion(bundle=signed)).created  # same content: no new one
        tampered = {**signed, "message": "not what was signed"}
        with pytest.raises(VersionBundleError, match="does not verify"):
            run(d, ImportVersion(bundle=tampered))
        changed = {**signed, "files": {**signed["files"], "workflow.sql": "SELECT 9;"}}
        with pytest.raises(VersionBundleError, match="changed after it was exported"):
            run(d, ImportVersion(bundle=changed))
        with pytest.raises(VersionBundleError, match="format 99"):
            run(d, ImportVersion(bundle={**signed, "klaw_bundle": 99}))
        assert [e.action for e in run(d, ListAudit()).entries] == ["version.imported"]
    finally:
        orch.close()


def test_draft_check_and_builder_save(dispatcher: Dispatcher) -> None:
    files = {"config.yaml": "engine: duckdb\n", "workflow.sql": SQL}
    ok = run(dispatcher, CheckDraft(workflow="fresh", files=files))
    assert isinstance(ok, DraftReply) and ok.error is None
    assert ok.plan is not None and ok.plan.stages == ("totals", "big")
    broken = {**files, "config.yaml": "engine: [duckdb\n"}
    bad = run(dispatcher, CheckDraft(workflow="fresh", files=broken))
    assert bad.error is not None and "klaw-draft-" not in bad.error.message
    assert bad.error.message.startswith("fresh/config.yaml")
    cycle = {
        **files,
        "workflow.sql": "-- name: a\nSELECT * FROM b;\n-- name: b\nSELECT * FROM a;\n",
    }
    assert run(dispatcher, CheckDraft(workflow="fresh", files=cycle)).error.code == "GraphError"
    saved = run(dispatcher, CreateVersion(workflow="fresh", message="from builder", files=files))
    assert saved.created and saved.version.kind == "folder"
    with pytest.raises(GraphError):
        run(dispatcher, CreateVersion(workflow="fresh", files=cycle))
    # the builder opening the hand-written folder and saving it unchanged: no new version
    run(dispatcher, CreateVersion(workflow="sales"))
    source = run(dispatcher, GetSource(workflow="sales"))
    again = run(dispatcher, CreateVersion(workflow="sales", files=source.files))
    assert not again.created and again.version.version == 1


def test_unknown_version_and_workflow(dispatcher: Dispatcher) -> None:
    with pytest.raises(VersionNotFoundError, match="has no version 3"):
        run(dispatcher, GetVersion(workflow="sales", number=3))
    with pytest.raises(VersionNotFoundError, match="No approval request"):
        run(dispatcher, ApproveRequest(request_id="req_nope"), BOB)


def git_repo(path: Path, files: dict[str, str], message: str) -> str:
    from dulwich import porcelain
    from dulwich.repo import Repo

    repo = Repo(str(path)) if (path / ".git").exists() else Repo.init(str(path), mkdir=True)
    write(path, files)
    porcelain.add(repo, [str(path / name) for name in files])
    sha = porcelain.commit(repo, message.encode(), author=b"Ann <ann@example.com>")
    return sha.decode()


def test_git_sync_dry_run_apply_and_broken_commit(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    first = {
        "flows/orders/config.yaml": "engine: duckdb\n",
        "flows/orders/workflow.sql": SQL,
        "flows/stock/config.yaml": "engine: duckdb\n",
        "flows/stock/workflow.sql": "-- name: levels\nSELECT 1 AS item;\n",
    }
    git_repo(repo, first, "two workflows")
    git = f'\n[lifecycle.git]\nurl = "{repo}"\nbranch = "master"\npath = "flows"\n'
    orch = Orchestrator.open(make_project(tmp_path / "p", git))
    d = Dispatcher(orch)
    try:
        dry = run(d, SyncGit(dry_run=True))
        assert [(c.workflow, c.action) for c in dry.changes] == [
            ("orders", "create"),
            ("stock", "create"),
        ]
        assert run(d, ListAudit()).entries == []
        done = run(d, SyncGit())
        assert [(c.workflow, c.action, c.version) for c in done.changes] == [
            ("orders", "created", 1),
            ("stock", "created", 1),
        ]
        assert run(d, ListVersions(workflow="orders")).versions[0].message.startswith("git ")
        sha = git_repo(repo, {"flows/orders/config.yaml": "engine: [duckdb\n"}, "break it")
        broken = run(d, SyncGit())
        by_name = {c.workflow: c for c in broken.changes}
        assert by_name["orders"].action == "error" and by_name["stock"].action == "unchanged"
        assert f"commit {sha[:12]}" in by_name["orders"].error
        assert (
            "flows/orders" in by_name["orders"].error and "config.yaml" in by_name["orders"].error
        )
        deployed = run(d, ListVersions(workflow="orders")).deployments
        assert [(x.environment, x.version) for x in deployed] == [("dev", 1)]
    finally:
        orch.close()


def test_runs_record_their_version_and_run_a_deployed_one(
    dispatcher: Dispatcher, project: Path
) -> None:
    from klaw.protocol import SubmitRun

    orch = dispatcher.orchestrator
    plain = run(dispatcher, SubmitRun(workflow="sales")).run
    assert plain.version is None and plain.environment is None  # no version holds these files
    run(dispatcher, CreateVersion(workflow="sales", message="v1"))
    run(dispatcher, PromoteVersion(workflow="sales", number=1, to="qa"))
    held = run(dispatcher, SubmitRun(workflow="sales")).run
    assert held.version == 1 and held.environment is None
    # the files move on; qa still runs v1's own files
    (project / "workflows/sales/workflow.sql").write_text(
        SQL + "\n-- name: later\nSELECT 7 AS n;\n"
    )
    in_qa = run(dispatcher, SubmitRun(workflow="sales", environment="qa")).run
    assert in_qa.state.value == "succeeded" and (in_qa.version, in_qa.environment) == (1, "qa")
    stages = {a.stage for a in orch.attempts(in_qa.run_id)}
    assert stages == {"totals", "big"}
    with pytest.raises(PromotionError, match="no version deployed in prod"):
        run(dispatcher, SubmitRun(workflow="sales", environment="prod"))


def test_the_published_bundle_schema_is_current() -> None:
    import json

    from klaw.service.bundles import schema

    published = Path(__file__).parents[2] / "docs" / "bundle.schema.json"
    assert json.loads(published.read_text()) == schema(), (
        "regenerate docs/bundle.schema.json from klaw.service.bundles.schema()"
    )


def test_a_schedule_runs_the_prod_version(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from klaw.triggers import TriggerService

    root = make_project(tmp_path / "p")
    (root / "workflows/sales/config.yaml").write_text("engine: duckdb\nschedule: '0 * * * *'\n")
    orch = Orchestrator.open(root)
    d = Dispatcher(orch)
    try:
        start = datetime(2026, 3, 1, 0, 30, tzinfo=UTC)
        service = TriggerService(orch, clock=start.timestamp)
        service.sync(start)
        [before] = service.run_due(start + timedelta(hours=1))
        assert orch.wait(before.run_id, timeout=60)
        assert orch.get_run(before.run_id).environment is None  # no prod version yet
        run(d, CreateVersion(workflow="sales"))
        run(d, PromoteVersion(workflow="sales", number=1, to="qa"))
        for env in ("uat", "prod"):
            asked = run(d, PromoteVersion(workflow="sales", number=1, to=env))
            run(d, ApproveRequest(request_id=asked.request.request_id), BOB)
        [fired] = service.run_due(start + timedelta(hours=2))
        assert orch.wait(fired.run_id, timeout=60)
        ran = orch.get_run(fired.run_id)
        assert (ran.version, ran.environment, ran.state.value) == (1, "prod", "succeeded")
    finally:
        orch.shutdown(wait=30)
        orch.close()


def test_the_trigger_service_polls_the_git_repository(tmp_path: Path) -> None:
    from klaw.triggers import TriggerService

    repo = tmp_path / "repo"
    git_repo(
        repo,
        {"flows/orders/config.yaml": "engine: duckdb\n", "flows/orders/workflow.sql": SQL},
        "one",
    )
    git = (
        f'\n[lifecycle.git]\nurl = "{repo}"\nbranch = "master"\n'
        'path = "flows"\npoll_interval = "5m"\n'
    )
    orch = Orchestrator.open(make_project(tmp_path / "p", git))
    now = [1_000.0]
    service = TriggerService(orch, clock=lambda: now[0])
    try:
        assert service.poll_git(now[0]) == 300
        assert [v.version for v in orch.metadata.list_versions("orders")] == [1]
        git_repo(repo, {"flows/orders/workflow.sql": SQL + "\n-- name: c\nSELECT 3 AS z;\n"}, "two")
        now[0] += 60
        assert service.poll_git(now[0]) == 240  # not yet due: nothing read
        assert len(orch.metadata.list_versions("orders")) == 1
        now[0] += 240
        service.poll_git(now[0])
        [newest, _] = orch.metadata.list_versions("orders")
        assert newest.version == 2 and newest.author == "git:poll" and "two" in newest.message
    finally:
        orch.close()
