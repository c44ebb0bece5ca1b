"""The chaos campaign's checker: a clean history passes every invariant, and each kind of
broken build the campaign exists to catch is reported with the events that led to it."""

from __future__ import annotations

import copy
from typing import Any

from scripts.chaos.checker import History, check

ACCOUNT = "123456789012"
TD = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:{}"
SD = "arn:aws:ecs:us-east-1:123456789012:service-deployment/demo/web/{}"


def record(deployment_id: str, state: str, revision: int | None, **extra: Any) -> dict[str, Any]:
    """A final deployment record of service ``web``, updated at ``revision`` (None: never)."""
    started = float(revision or 0) * 10
    steps = [{"step": "resolve", "status": "completed", "at": started}]
    if revision is not None:
        steps.append({"step": "update", "status": "completed", "at": started + 1})
    base: dict[str, Any] = {
        "id": deployment_id,
        "kind": "update-existing",
        "job": {},
        "state": state,
        "cluster": "demo",
        "service": "web",
        "account": ACCOUNT,
        "task_definition_arn": TD.format(revision) if revision else None,
        "service_deployment_arn": SD.format(revision) if revision else None,
        "ecs_deployment_id": f"ecs-svc/{revision}" if revision else None,
        "steps": steps,
        "created_at": started,
        "finished_at": started + 5,
    }
    base.update(extra)
    return base


def ecs_entry(revision: int, status: str, rollback_reason: str | None = None) -> dict[str, Any]:
    """ECS's history entry of the service deployment to ``revision``."""
    return {
        "arn": SD.format(revision),
        "status": status,
        "task_definition": TD.format(revision),
        "status_reason": None,
        "rollback_reason": rollback_reason,
    }


def _got(records: dict[str, dict[str, Any] | None], key: str) -> dict[str, Any]:
    """The record under ``key``, which the history must hold."""
    found = records[key]
    assert found is not None, key
    return found


def clean() -> History:
    """A release of two waves on one service, both succeeded, then an outside deployment."""
    return History(
        enqueues=[
            {"kind": "release", "id": "r1", "accepted": True, "at": 0.0, "exit_code": 0},
            {"kind": "update", "id": "d3", "accepted": True, "at": 25.0, "exit_code": 1},
            {"kind": "update", "id": None, "accepted": False, "at": 26.0, "exit_code": 3},
        ],
        deployments={
            "d1": record("d1", "succeeded", 2),
            "d2": record("d2", "succeeded", 3, created_at=27.0),
            "d3": record("d3", "rolled_back", 4, rolled_back_by_ecs=True),
        },
        releases={
            "r1": {"id": "r1", "state": "succeeded", "waves": [["d1"], ["d2"]], "created_at": 0.0}
        },
        ecs={
            f"{ACCOUNT}/demo/web": {
                "task_definition": TD.format(5),
                "deployments": [
                    ecs_entry(1, "SUCCESSFUL"),
                    ecs_entry(2, "SUCCESSFUL"),
                    ecs_entry(3, "SUCCESSFUL"),
                    ecs_entry(4, "ROLLBACK_SUCCESSFUL", "ECS deployment circuit breaker"),
                    ecs_entry(5, "SUCCESSFUL"),
                ],
            }
        },
        asked={f"{ACCOUNT}/demo/web": [TD.format(1), TD.format(5)]},
        revisions={"d1": [TD.format(2)], "d2": [TD.format(3)], "d3": [TD.format(4)]},
        leftovers={"conveyor:due": 0, "conveyor:service:*:queue": 0},
        default_account=ACCOUNT,
    )


def violated(history: History) -> dict[str, list[str]]:
    """Invariant name -> its violations' messages, for the violated ones only."""
    return {r.name: [v.message for v in r.violations] for r in check(history) if not r.ok}


def test_a_clean_history_passes_every_invariant() -> None:
    results = check(clean())
    assert len(results) == 23
    assert [r.name for r in results if not r.ok] == []
    assert all(r.describe().startswith("[ok]") for r in results)


def test_a_release_that_counts_a_rolled_back_carrier_as_success_is_caught() -> None:
    """The broken build: a release's deployment is superseded by a newer job, that newer job
    is rolled back by the breaker, and the release still reports succeeded."""
    history = clean()
    history.deployments["d2"] = record("d2", "superseded", None, superseded_by="d3")
    history.revisions.pop("d2")
    found = violated(history)
    assert list(found) == ["a succeeded release has every change live"]
    [message] = found["a succeeded release has every change live"]
    assert "deployment d2 ended rolled_back (carried by d3)" in message
    [result] = [r for r in check(history) if not r.ok]
    # The events that led to it: the release's deployment and its carrier, with their steps.
    text = result.describe()
    assert "deployment d2 superseded" in text
    assert "deployment d3 rolled_back" in text


def test_a_deployment_reported_succeeded_while_ecs_stopped_it_is_caught() -> None:
    """The broken build that treats `superseded` (an ECS deployment STOPPED by a newer one)
    as success."""
    history = clean()
    history.ecs[f"{ACCOUNT}/demo/web"]["deployments"][2] = ecs_entry(3, "STOPPED")
    found = violated(history)
    assert list(found) == ["every verdict agrees with ECS's deployment history"]
    assert "d2 reports succeeded" in found["every verdict agrees with ECS's deployment history"][0]


def test_a_job_that_registered_two_revisions_is_caught() -> None:
    history = clean()
    history.revisions["d1"].append(TD.format(9))
    found = violated(history)
    assert list(found) == ["no job registered more than one revision"]
    assert "d1 registered 2 revisions" in found["no job registered more than one revision"][0]


def test_a_lost_job_and_an_unfinished_one_are_caught() -> None:
    history = clean()
    history.enqueues.append({"kind": "update", "id": "gone", "accepted": True, "at": 30.0})
    history.deployments["d3"] = dict(_got(history.deployments, "d3"), state="running")
    found = violated(history)
    assert found["no accepted job was lost"] == ["update gone has no record"]
    assert found["every accepted job reached a terminal state"] == ["deployment d3 is running"]


def test_overlapping_deployments_on_one_service_are_caught() -> None:
    history = clean()
    _got(history.deployments, "d3")["steps"][1]["at"] = 21.0  # while d1 (20..25) still ran
    _got(history.deployments, "d3")["steps"][0]["at"] = 20.5
    _got(history.deployments, "d1")["steps"][1]["at"] = 20.0
    _got(history.deployments, "d1")["finished_at"] = 25.0
    found = violated(history)
    assert list(found) == ["no two Conveyor deployments overlapped on one service"]


def test_a_revision_nobody_asked_for_is_caught() -> None:
    history = clean()
    history.ecs[f"{ACCOUNT}/demo/web"]["task_definition"] = TD.format(7)
    assert list(violated(history)) == ["no service runs a revision nobody asked for"]


def test_stopping_someone_elses_deployment_is_caught() -> None:
    history = clean()
    history.ecs[f"{ACCOUNT}/demo/web"]["deployments"][4] = ecs_entry(
        5, "ROLLBACK_SUCCESSFUL", "Service deployment rollback requested by StopServiceDeployment."
    )
    assert list(violated(history)) == ["Conveyor never stopped a deployment it did not make"]
    own = clean()
    own.ecs[f"{ACCOUNT}/demo/web"]["deployments"][3]["rollback_reason"] = "by StopServiceDeployment"
    assert violated(own) == {}


def test_a_stop_of_a_deployment_whose_record_lacks_the_arn_is_matched_by_revision() -> None:
    """Records need not hold the service deployment's ARN: Conveyor's own stop is recognised
    by the revision its deployment made, and an outside revision's stop still is not."""
    history = clean()
    _got(history.deployments, "d2")["service_deployment_arn"] = None
    history.ecs[f"{ACCOUNT}/demo/web"]["deployments"][2]["rollback_reason"] = (
        "Service deployment rollback requested by StopServiceDeployment."
    )
    history.ecs[f"{ACCOUNT}/demo/web"]["deployments"][2]["status"] = "SUCCESSFUL"
    assert violated(history) == {}
    # A cancel that adopted the ECS deployment an uncommitted update step made: the record
    # has no ECS deployment id, but the revision is the one the job registered.
    _got(history.deployments, "d2")["ecs_deployment_id"] = None
    assert violated(history) == {}
    history.revisions.pop("d2")  # and now nothing ties that revision to Conveyor
    assert list(violated(history)) == ["Conveyor never stopped a deployment it did not make"]


def _stop_call(revision: int, client: str = "conveyor", outcome: str = "ok") -> dict[str, Any]:
    """The local AWS's log entry of a StopServiceDeployment of ``revision``'s deployment."""
    return {
        "seq": 1,
        "at": 30.0,
        "op": "StopServiceDeployment",
        "client": client,
        "outcome": outcome,
        "serviceDeploymentArn": SD.format(revision),
        "stopType": "ROLLBACK",
    }


def test_a_stop_call_aimed_at_someone_elses_deployment_is_caught_even_when_ecs_refused_it() -> None:
    """Revision 5 is an outside deployment. ECS's history shows no stop of it (the call came
    after it had ended, so ECS refused it), yet Conveyor's call log shows the attempt."""
    history = clean()
    history.aws_log = [_stop_call(5, outcome="client_error:400")]
    assert violated(history) == {
        "every stop Conveyor sent named its own deployment": [
            f"Conveyor asked ECS to stop {SD.format(5)}, which no Conveyor deployment made"
        ]
    }
    own = clean()
    own.aws_log = [_stop_call(4), _stop_call(5, client="other")]
    assert violated(own) == {}
    # Matched by the revision the job registered when its record lacks the ARN.
    by_revision = clean()
    _got(by_revision.deployments, "d3")["service_deployment_arn"] = None
    by_revision.aws_log = [_stop_call(4)]
    assert violated(by_revision) == {}


def test_deployments_of_waves_a_release_never_reached_need_no_record() -> None:
    history = clean()
    history.releases["r1"] = dict(
        _got(history.releases, "r1"), state="cancelled", wave=0, cancel_requested_at=30.0
    )
    history.deployments.pop("d2")
    history.revisions.pop("d2")
    assert violated(history) == {}
    _got(history.releases, "r1")["wave"] = 1  # it did reach the second wave: d2 is lost
    assert violated(history) == {
        "no accepted job was lost": ["deployment d2 of release r1 has no record"]
    }


def test_a_cancelled_release_that_started_another_wave_is_caught() -> None:
    history = clean()
    history.releases["r1"] = dict(
        _got(history.releases, "r1"), state="cancelled", cancel_requested_at=15.0
    )
    history.enqueues[0]["exit_code"] = 5
    assert list(violated(history)) == ["a cancelled release started nothing after the cancel"]
    _got(history.releases, "r1")["cancel_requested_at"] = 30.0
    assert violated(history) == {}


def test_leftover_work_keys_without_expiry_and_secrets_are_caught() -> None:
    history = clean()
    history.leftovers["conveyor:due"] = 2
    history.untimed.append("conveyor:deployment:d1")
    history.secret_hits.append("log worker-0.log")
    found = violated(history)
    assert found["no key grows without bound"] == [
        "conveyor:due still holds 2 entries when quiet",
        "conveyor:deployment:d1 never expires",
    ]
    assert found["no secret value appears in Redis, the logs or the metrics"] == [
        "the secret value appears in log worker-0.log"
    ]


def test_the_checker_does_not_change_the_history() -> None:
    history = clean()
    before = copy.deepcopy(history)
    check(history)
    assert history == before


def test_a_deployment_built_on_a_discarded_revision_is_caught() -> None:
    """The broken build: d3 was rolled back and its revision web:4 tagged conveyor:discarded,
    and a deployment created after d3 ended built its revision on web:4 anyway (the failed
    change shipped again). A deployment that chose web:4 before d3 failed, and a base-service
    job on a service that ran web:4, are not violations."""
    history = clean()
    history.discarded = {TD.format(4): "rolled_back"}
    history.deployments["d3"]["base_task_definition_arn"] = TD.format(3)  # type: ignore[index]
    later = record("d5", "succeeded", 10, base_task_definition_arn=TD.format(4))
    earlier = record("d4", "superseded", None, base_task_definition_arn=TD.format(4))
    earlier["created_at"], earlier["finished_at"] = 40.0, 44.0  # before d3 ended (at 45)
    runs_it = record(
        "d6",
        "succeeded",
        12,
        job={"base": "service"},
        base_task_definition_arn=TD.format(4),
        previous_task_definition_arn=TD.format(4),
    )
    for one in (later, earlier, runs_it):
        history.deployments[one["id"]] = one
    ecs = history.ecs[f"{ACCOUNT}/demo/web"]["deployments"]
    ecs += [ecs_entry(10, "SUCCESSFUL"), ecs_entry(12, "SUCCESSFUL")]
    found = violated(history)
    name = "no deployment built on a discarded revision"
    assert list(found) == [name], found
    [message] = found[name]
    assert message.startswith("deployment d5 built")
    assert "on web:4, discarded (rolled_back) by d3" in message
    [result] = [r for r in check(history) if r.name == name]
    assert "deployment d3 rolled_back" in result.describe()


# -- staged deployments: approvals, alarms, --wait-until ---------------------------------------

TDS = "arn:aws:ecs:us-east-1:123456789012:task-definition/st:{}"
SDS = "arn:aws:ecs:us-east-1:123456789012:service-deployment/demo/st/{}"
ALARM = "st-5xx"
ALARM_REASON = f"ECS deployment alarms: alarm(s) {ALARM} in ALARM state."
STAGES_TO_PRODUCTION = [
    "PRE_SCALE_UP",
    "SCALE_UP",
    "POST_SCALE_UP",
    "TEST_TRAFFIC_SHIFT",
    "POST_TEST_TRAFFIC_SHIFT",
    "PRE_PRODUCTION_TRAFFIC_SHIFT",
    "PRODUCTION_TRAFFIC_SHIFT",
]


def staged_record(deployment_id: str, state: str, revision: int, **extra: Any) -> dict[str, Any]:
    """A final record of a CANARY deployment of service ``st``, at ``revision``."""
    return record(
        deployment_id,
        state,
        revision,
        service="st",
        task_definition_arn=TDS.format(revision),
        service_deployment_arn=SDS.format(revision),
        progress={"strategy": "CANARY", "lifecycle_stage": "CLEAN_UP"},
        **extra,
    )


def staged_entry(revision: int, status: str, reason: str | None = None) -> dict[str, Any]:
    """ECS's entry of the service deployment of ``st`` to ``revision``."""
    return {
        "arn": SDS.format(revision),
        "status": status,
        "task_definition": TDS.format(revision),
        "status_reason": reason,
        "rollback_reason": reason,
    }


def _continue(revision: int, hook: str, action: str, outcome: str = "ok") -> dict[str, Any]:
    return {
        "seq": 9,
        "op": "ContinueServiceDeployment",
        "client": "conveyor",
        "outcome": outcome,
        "serviceDeploymentArn": SDS.format(revision),
        "hookId": hook,
        "action": action,
    }


def staged() -> History:
    """On service ``st``: s1 approved at its PAUSE hook and succeeded; s2 rolled back by an
    alarm in its bake; s3 followed with `--wait-until production-traffic`, then succeeded."""
    sent = {
        "action": "CONTINUE",
        "by": "chaos",
        "requested_at": 111.0,
        "hook_id": "h1",
        "stage": "POST_SCALE_UP",
        "acted_at": 112.0,
        "outcome": "sent to ECS (ContinueServiceDeployment CONTINUE)",
    }
    reason = f"ECS rolled the CANARY deployment back: alarm(s) {ALARM} triggered; {ALARM_REASON}"
    history = clean()
    key = f"{ACCOUNT}/demo/st"
    history.enqueues += [
        {"kind": "staged", "id": "s1", "accepted": True, "at": 110.0, "exit_code": 0},
        {"kind": "staged", "id": "s2", "accepted": True, "at": 120.0, "exit_code": 1},
        {
            "kind": "staged",
            "id": "s3",
            "accepted": True,
            "at": 130.0,
            "exit_code": 0,
            "wait_until": "PRODUCTION_TRAFFIC_SHIFT",
            "wait_exit": 0,
            "wait_terminal": False,
            "wait_state": "running",
            "wait_stage": "PRODUCTION_TRAFFIC_SHIFT",
            "wait_arn": SDS.format(13),
            "wait_ecs_stages": STAGES_TO_PRODUCTION,
        },
    ]
    history.deployments.update(
        s1=staged_record("s1", "succeeded", 11, approvals=[sent]),
        s2=staged_record("s2", "rolled_back", 12, reason=reason, rolled_back_by_ecs=True),
        s3=staged_record("s3", "succeeded", 13),
    )
    history.ecs[key] = {
        "task_definition": TDS.format(13),
        "deployments": [
            staged_entry(11, "SUCCESSFUL"),
            staged_entry(12, "ROLLBACK_SUCCESSFUL", ALARM_REASON),
            staged_entry(13, "SUCCESSFUL"),
        ],
    }
    history.asked[key] = [TDS.format(10)]
    history.revisions.update(s1=[TDS.format(11)], s2=[TDS.format(12)], s3=[TDS.format(13)])
    history.answers = [
        {"at": 111.0, "id": "s1", "action": "CONTINUE", "by": "chaos", "error": None}
    ]
    history.aws_log = [_continue(11, "h1", "CONTINUE")]
    history.alarms = [{"alarm": ALARM, "service": key, "at": 121.0, "until": 125.0}]
    return history


NEW = (
    "a staged deployment's verdict is ECS's",
    "an alarm's rollback is reported rolled back, naming it",
    "every answer Conveyor sent to a hook was asked for",
    "every answer reported sent reached ECS",
    "a --wait-until that exited 0 had its stage reached in ECS",
)


def test_a_clean_history_of_staged_deployments_passes_every_invariant() -> None:
    results = {r.name: r for r in check(staged())}
    assert [name for name, r in results.items() if not r.ok] == []
    # Each new invariant had something to check.
    assert all(results[name].checked > 0 for name in NEW)


def test_a_staged_deployment_reported_rolled_back_while_ecs_stopped_it_is_caught() -> None:
    """The broken build that takes STOPPED (nothing rolled back: the new revision stays beside
    the old) for a rollback; the general verdict invariant lets it through."""
    history = staged()
    history.ecs[f"{ACCOUNT}/demo/st"]["deployments"][0] = staged_entry(11, "STOPPED")
    _got(history.deployments, "s1")["state"] = "rolled_back"
    found = violated(history)
    assert list(found) == ["a staged deployment's verdict is ECS's"]
    assert (
        "s1 reports rolled_back, but ECS's service deployment ended STOPPED"
        in (found["a staged deployment's verdict is ECS's"][0])
    )


def test_a_cancelled_verdict_needs_a_cancel_asked_for() -> None:
    history = staged()
    _got(history.deployments, "s2")["state"] = "cancelled"
    assert "a staged deployment's verdict is ECS's" in violated(history)
    _got(history.deployments, "s2")["cancel_requested_at"] = 122.0
    assert violated(history) == {}


def test_an_alarm_rollback_reported_succeeded_or_without_the_alarm_is_caught() -> None:
    history = staged()
    _got(history.deployments, "s2")["state"] = "succeeded"
    found = violated(history)
    assert (
        "s2 was rolled back by an alarm, and reports succeeded"
        in (found["an alarm's rollback is reported rolled back, naming it"][0])
    )
    history = staged()
    _got(history.deployments, "s2")["reason"] = "ECS rolled the CANARY deployment back"
    found = violated(history)
    assert list(found) == ["an alarm's rollback is reported rolled back, naming it"]
    assert (
        f"does not name ['{ALARM}']"
        in found["an alarm's rollback is reported rolled back, naming it"][0]
    )


def test_a_continue_with_the_wrong_action_or_on_a_deployment_not_ours_is_caught() -> None:
    """The broken build that sends CONTINUE for a reject (or answers hooks of deployments it
    never made, or no one asked it to answer)."""
    history = staged()
    history.aws_log.append(_continue(11, "h2", "ROLLBACK"))
    history.aws_log.append(_continue(12, "h3", "CONTINUE", outcome="client_error:400"))
    history.aws_log.append(_continue(99, "h4", "CONTINUE"))
    found = violated(history)
    assert list(found) == ["every answer Conveyor sent to a hook was asked for"]
    messages = found["every answer Conveyor sent to a hook was asked for"]
    assert (
        "sent ROLLBACK for deployment s1, but what was asked for it was ['CONTINUE']" in messages[0]
    )
    assert "sent CONTINUE for deployment s2, but what was asked for it was nothing" in messages[1]
    assert "no record made" in messages[2]


def test_an_answer_reported_sent_that_ecs_never_took_is_caught() -> None:
    history = staged()
    history.aws_log = [_continue(11, "h1", "CONTINUE", outcome="throttled")]
    found = violated(history)
    assert list(found) == ["every answer reported sent reached ECS"]
    assert (
        "s1 reports CONTINUE sent to ECS for hook h1"
        in (found["every answer reported sent reached ECS"][0])
    )


def test_a_wait_until_that_returned_before_ecs_reached_the_stage_is_caught() -> None:
    """The broken build that returns at the stage Conveyor guessed, not the one ECS shows, or
    exits 0 for a deployment that ended badly before the stage."""
    history = staged()
    history.enqueues[-1]["wait_ecs_stages"] = STAGES_TO_PRODUCTION[:3]
    found = violated(history)
    assert list(found) == ["a --wait-until that exited 0 had its stage reached in ECS"]
    assert (
        "exited 0 at PRODUCTION_TRAFFIC_SHIFT, but ECS shows"
        in (found["a --wait-until that exited 0 had its stage reached in ECS"][0])
    )
    history = staged()
    history.enqueues[-1].update(wait_terminal=True, wait_state="rolled_back")
    assert (
        "ended rolled_back and the wait exited 0"
        in (violated(history)["a --wait-until that exited 0 had its stage reached in ECS"][0])
    )


def governed() -> History:
    """``clean()`` plus a governed release: a budget of one failure, an approval before its
    second wave, and a freeze window that opened after it started its second wave."""
    history = clean()
    history.enqueues.append(
        {
            "kind": "release",
            "id": "r2",
            "accepted": True,
            "at": 40.0,
            "exit_code": 1,
            "wall_from": 40.0,
            "wall_to": 40.5,
            "governed": True,
        }
    )
    history.deployments.update(
        {
            "g1": record("g1", "failed", None, created_at=41.0, service="api"),
            "g2": record("g2", "succeeded", 6, created_at=60.0, service="api2"),
        }
    )
    history.releases["r2"] = {
        "id": "r2",
        "state": "failed",
        "waves": [["g1"], ["g2"]],
        "outcomes": {"g1": "failed", "g2": "succeeded"},
        "max_failures": 1,
        "approve_before": [1],
        "approvals": [{"wave": 1, "action": "CONTINUE", "by": "chaos", "at": 55.0}],
        "created_at": 40.0,
    }
    history.ecs[f"{ACCOUNT}/demo/api2"] = {
        "task_definition": TD.format(6),
        "deployments": [ecs_entry(6, "SUCCESSFUL")],
    }
    history.revisions["g2"] = [TD.format(6)]
    history.asked[f"{ACCOUNT}/demo/api2"] = []
    history.freezes.append({"name": "f1", "start": 70.0, "end": 80.0, "at": 69.0})
    return history


def test_a_governed_history_passes_the_governance_invariants() -> None:
    results = {r.name: r for r in check(governed())}
    for name in (
        "nothing starts inside a freeze window without an override",
        "no wave starts past a spent failure budget",
        "a wave to approve starts only once approved",
    ):
        assert results[name].ok, results[name].describe()
        assert results[name].checked > 0, name


def test_an_enqueue_accepted_inside_a_freeze_without_an_override_is_caught() -> None:
    history = governed()
    history.enqueues.append(
        {
            "kind": "update",
            "id": "d9",
            "accepted": True,
            "at": 71.0,
            "exit_code": 0,
            "wall_from": 71.0,
            "wall_to": 71.2,
        }
    )
    frozen = "nothing starts inside a freeze window without an override"
    assert violated(history)[frozen] == [
        "update d9 was accepted without an override inside freeze window f1"
    ]
    history.enqueues[-1]["override"] = True
    assert "nothing starts inside a freeze window without an override" not in violated(history)


def test_a_refusal_for_a_freeze_with_no_window_open_is_caught() -> None:
    history = governed()
    history.enqueues.append(
        {
            "kind": "update",
            "id": None,
            "accepted": False,
            "at": 90.0,
            "exit_code": 2,
            "error": "FrozenError: refused: inside freeze window f1",
            "wall_from": 90.0,
            "wall_to": 90.1,
        }
    )
    assert list(violated(history)) == ["nothing starts inside a freeze window without an override"]


def test_a_release_that_starts_a_wave_inside_a_freeze_is_caught() -> None:
    history = governed()
    history.freezes[0].update(start=59.0, end=61.0)
    assert list(violated(history)) == ["nothing starts inside a freeze window without an override"]
    _got(history.releases, "r2")["freeze_override"] = {"window": "f1", "reason": "x"}
    assert violated(history) == {}


def test_a_wave_started_past_a_spent_budget_is_caught() -> None:
    history = governed()
    _got(history.releases, "r2")["max_failures"] = 0
    assert list(violated(history)) == ["no wave starts past a spent failure budget"]
    _got(history.releases, "r2").pop("max_failures")
    _got(history.releases, "r2")["max_failure_percent"] = 49.0
    assert list(violated(history)) == ["no wave starts past a spent failure budget"]
    _got(history.releases, "r2")["max_failure_percent"] = 50.0
    assert violated(history) == {}


def test_a_wave_started_before_its_approval_or_after_a_rejection_is_caught() -> None:
    history = governed()
    _got(history.releases, "r2")["approvals"][0]["at"] = 61.0
    assert list(violated(history)) == ["a wave to approve starts only once approved"]
    _got(history.releases, "r2")["approvals"][0].update(at=55.0, action="REJECT")
    messages = violated(history)["a wave to approve starts only once approved"]
    assert len(messages) == 2  # started although rejected, and not ended cancelled
    history.deployments.pop("g2")
    history.revisions.pop("g2", None)
    _got(history.releases, "r2").update(state="cancelled", wave=0)
    assert "a wave to approve starts only once approved" not in violated(history)


def gated() -> History:
    """``governed()`` plus a release whose two waves are each followed by a gate; the first
    passed before the second wave started, the last passed before it succeeded."""
    history = governed()
    history.enqueues.append(
        {"kind": "release", "id": "r3", "accepted": True, "at": 90.0, "exit_code": 0}
    )
    history.deployments.update(
        {
            "h1": record("h1", "succeeded", 7, created_at=91.0, service="api2"),
            "h2": record("h2", "succeeded", 8, created_at=110.0, service="api2"),
        }
    )
    history.ecs[f"{ACCOUNT}/demo/api2"]["task_definition"] = TD.format(8)
    history.ecs[f"{ACCOUNT}/demo/api2"]["deployments"] += [
        ecs_entry(7, "SUCCESSFUL"),
        ecs_entry(8, "SUCCESSFUL"),
    ]
    history.revisions.update({"h1": [TD.format(7)], "h2": [TD.format(8)]})
    gate = {"name": "g", "alarm": {"name": "a"}}
    history.releases["r3"] = {
        "id": "r3",
        "state": "succeeded",
        "waves": [["h1"], ["h2"]],
        "outcomes": {"h1": "succeeded", "h2": "succeeded"},
        "gates": [gate, gate],
        "gate_runs": [
            {"wave": 0, "gate": "g", "state": "passed", "decided_at": 105.0},
            {"wave": 1, "gate": "g", "state": "passed", "decided_at": 125.0},
        ],
        "created_at": 90.0,
    }
    return history


GATES = "no wave starts past a failed gate"


def test_a_gated_history_passes_every_invariant() -> None:
    results = {r.name: r for r in check(gated())}
    assert [r.describe() for r in results.values() if not r.ok] == []
    assert results[GATES].checked == 2


def test_a_wave_started_before_or_without_its_gate_passing_is_caught() -> None:
    history = gated()
    runs = _got(history.releases, "r3")["gate_runs"]
    runs[0]["decided_at"] = 111.0
    assert list(violated(history)) == [GATES]
    runs[0].update(decided_at=105.0, state="failed")
    assert list(violated(history)) == [GATES]
    runs[0].update(state="inconclusive", action="fail")
    assert list(violated(history)) == [GATES]
    runs[0].update(action="pass")
    assert violated(history) == {}
    runs[0].update(action="pause")
    assert list(violated(history)) == [GATES]
    approval = {"wave": 1, "action": "CONTINUE", "by": "chaos", "at": 108.0}
    _got(history.releases, "r3")["approvals"] = [approval]
    assert violated(history) == {}
    approval["at"] = 112.0  # approved after the wave had started
    assert list(violated(history)) == [GATES]


def test_a_release_that_succeeds_past_its_last_gate_failing_is_caught() -> None:
    history = gated()
    _got(history.releases, "r3")["gate_runs"][1]["state"] = "failed"
    assert violated(history) == {
        GATES: [
            "release r3 succeeded, but the gate of its last wave did not pass "
            "({'wave': 1, 'gate': 'g', 'state': 'failed', 'decided_at': 125.0})"
        ]
    }


TASKS = "a wave's services change only after its pre-deploy tasks passed"


def with_tasks() -> History:
    """``clean()`` plus a release whose first wave runs a migration in t1 before o1."""
    history = clean()
    history.enqueues.append(
        {"kind": "release", "id": "r4", "accepted": True, "at": 40.0, "exit_code": 0}
    )
    history.deployments.update(
        {
            "t1": record(
                "t1",
                "succeeded",
                6,
                created_at=41.0,
                service="api2",
                pre_deploy={"container": "app", "exit_code": 0},
            ),
            "o1": record("o1", "succeeded", 7, created_at=51.0, service="api3"),
        }
    )
    for key, revision in (("api2", 6), ("api3", 7)):
        history.ecs[f"{ACCOUNT}/demo/{key}"] = {
            "task_definition": TD.format(revision),
            "deployments": [ecs_entry(revision, "SUCCESSFUL")],
        }
        history.asked[f"{ACCOUNT}/demo/{key}"] = []
    history.revisions.update({"t1": [TD.format(6)], "o1": [TD.format(7)]})
    history.releases["r4"] = {
        "id": "r4",
        "state": "succeeded",
        "waves": [["t1", "o1"]],
        "jobs": {"t1": {"pre_deploy": {"container": "app"}}, "o1": {}},
        "outcomes": {"t1": "succeeded", "o1": "succeeded"},
        "tasks_passed": {"t1": 50.0},
        "created_at": 40.0,
        "wave": 0,
    }
    return history


def test_a_release_with_a_migration_first_passes_every_invariant() -> None:
    results = {r.name: r for r in check(with_tasks())}
    assert [r.describe() for r in results.values() if not r.ok] == []
    assert results[TASKS].checked == 1


def test_a_service_started_before_its_wave_s_migration_passed_is_caught() -> None:
    history = with_tasks()
    _got(history.deployments, "o1")["created_at"] = 49.0
    assert list(violated(history)) == [TASKS]
    _got(history.releases, "r4")["tasks_passed"] = {}
    assert list(violated(history)) == [TASKS]


def test_a_failed_migration_that_still_changed_a_service_or_went_on_is_caught() -> None:
    history = with_tasks()
    release = _got(history.releases, "r4")
    release.update(
        state="failed",
        tasks_passed={},
        outcomes={"t1": "failed"},
        not_started={"o1": "not started"},
    )
    history.deployments["t1"] = record(
        "t1",
        "failed",
        None,
        created_at=41.0,
        service="api2",
        pre_deploy={"container": "app", "exit_code": 1},
    )
    history.deployments.pop("o1")
    history.revisions["t1"] = []
    history.revisions.pop("o1")
    history.ecs[f"{ACCOUNT}/demo/api2"] = {"task_definition": TD.format(1), "deployments": []}
    history.asked[f"{ACCOUNT}/demo/api2"] = [TD.format(1)]
    history.ecs.pop(f"{ACCOUNT}/demo/api3")
    assert violated(history) == {}
    # Its service changed after all:
    _got(history.deployments, "t1")["steps"].append(
        {"step": "update", "status": "completed", "at": 45.0}
    )
    assert list(violated(history)) == [TASKS]
    _got(history.deployments, "t1")["steps"].pop()
    # A later wave started:
    release["waves"].append(["n1"])
    release["wave"] = 1
    history.deployments["n1"] = record("n1", "cancelled", None, created_at=60.0, service="api4")
    assert TASKS in violated(history)
