#!/usr/bin/env python3
"""Writes statemachine/provision.asl.json. The ASL is checked in (the template and the tests read
it); this script keeps its repetitive parts (Retry/Catch on every task, the wait loops) uniform.
Run it after changing the flow: python3 statemachine/tools/generate_asl.py"""
import json
import os

RETRY = [
    {"ErrorEquals": ["TransientError", "Lambda.ServiceException", "Lambda.AWSLambdaException",
                     "Lambda.SdkClientException", "Lambda.TooManyRequestsException"],
     "IntervalSeconds": 1, "MaxAttempts": 6, "BackoffRate": 2.0, "MaxDelaySeconds": 30, "JitterStrategy": "FULL"},
    {"ErrorEquals": ["IamPropagationError"],
     "IntervalSeconds": 5, "MaxAttempts": 6, "BackoffRate": 1.5, "MaxDelaySeconds": 30, "JitterStrategy": "FULL"},
    # a function process that died mid-invocation (shared/src/domain/error.rs CRASH_ERROR_NAMES): every
    # step is idempotent, so run it again; Finish above all, or the lease stays and CloudFormation
    # waits for its one-hour timeout
    {"ErrorEquals": ["Runtime.ExitError", "Lambda.Unknown"],
     "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 2.0, "MaxDelaySeconds": 10, "JitterStrategy": "FULL"},
]
CATCH = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Finish"}]
# a failed apply step: rolled back first when preflight says so (a CloudFormation Create of a
# deployment that had no record), then Finish
APPLY_CATCH = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RollBack?"}]
# a failed rollback step keeps the original error in $.error and adds its own
ROLLBACK_CATCH = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.rollbackError", "Next": "Finish"}]


def task(fn, result, nxt, comment, catch=CATCH):
    return {"Type": "Task", "Comment": comment, "Resource": "${%sFunctionArn}" % fn, "ResultPath": result,
            "TimeoutSeconds": 120, "Retry": RETRY, "Catch": catch, "Next": nxt}


def wait_loop(choice, wait, status_state, path, done_value, done_next, status_fn, comment, catch=CATCH, what="the workspace"):
    return {
        choice: {"Type": "Choice", "Comment": "Go on once %s is %s; else wait and look again." % (what, done_value),
                 "Choices": [
            {"Variable": path + ".status", "StringEquals": done_value, "Next": done_next}], "Default": wait},
        wait: {"Type": "Wait", "Comment": "The interval the status step chose (poll.waitSeconds: doubling from O11Y_WAIT_FIRST_SECONDS up to O11Y_WAIT_MAX_SECONDS until the expected duration since the workspace was started, then every O11Y_WAIT_NEAR_SECONDS; the step fails once the wait budget is spent).",
               "SecondsPath": path + ".poll.waitSeconds", "Next": status_state},
        status_state: task(status_fn, path, choice, comment, catch),
    }


def delete_chain(prefix, catch, what):
    """The delete steps in reverse order of apply, as states named <prefix><Step> (Delete: the
    delete action; Rollback: the rollback of a failed CloudFormation Create), ending in Finish."""
    p = prefix
    w = "" if p == "Delete" else p  # the delete action's wait loop keeps its original names
    states = {
        p + "Init": {"Type": "Pass", "Comment": "Delete reports go under $.deleted.", "Result": {}, "ResultPath": "$.deleted",
                     "Next": p + "Datasource"},
        p + "Datasource": task("Datasource", "$.deleted.datasource", p + "GrafanaWorkspace",
                               "In an adopted workspace, remove our datasource and service account (ours go with the workspace).", catch),
        p + "GrafanaWorkspace": task("GrafanaWorkspace", "$.deleted.grafanaWorkspace", w + "GrafanaGone?",
                                     "Start deleting the Grafana workspace if %s created it." % what, catch),
        p + "GrafanaRole": task("GrafanaRole", "$.deleted.grafanaRole", p + "WritePolicy",
                                "Remove the read policy and the Grafana role if ours.", catch),
        p + "WritePolicy": task("WritePolicy", "$.deleted.writePolicy", p + "AmpWorkspace",
                                "Detach and delete the write policy if ours.", catch),
        p + "AmpWorkspace": task("AmpWorkspace", "$.deleted.ampWorkspace", p + "IrsaTrust",
                                 "Delete the AMP workspace only if ours and retainMetrics is false.", catch),
        p + "IrsaTrust": task("IrsaTrust", "$.deleted.irsaTrust", p + "Outputs",
                              "Remove exactly the trust statement we added.", catch),
        p + "Outputs": task("Publish", "$.deleted.outputs", "Finish",
                            "Delete our SSM parameters, the record last.", catch),
    }
    states.update(wait_loop(w + "GrafanaGone?", w + "GrafanaDeletionWait", w + "GrafanaDeletionStatus",
                            "$.deleted.grafanaWorkspace", "DELETED", p + "GrafanaRole", "GrafanaStatus",
                            "Look again until the Grafana workspace is gone.", catch, "the Grafana workspace"))
    return states


states = {
    "Init": {"Type": "Choice", "Comment": "CloudFormation's cfn-handler sends {input, cloudFormation}; the console sends the input.",
             "Choices": [{"Variable": "$.cloudFormation", "IsPresent": True, "Next": "InitCloudFormation"}],
             "Default": "InitConsole"},
    "InitConsole": {"Type": "Pass", "Comment": "Keep the raw input under $.input; each step adds its output beside it.",
                    "Parameters": {"input.$": "$", "execution.$": "$$.Execution.Name"}, "Next": "Preflight"},
    "InitCloudFormation": {"Type": "Pass", "Comment": "The same state, plus where to answer CloudFormation.",
                           "Parameters": {"input.$": "$.input", "cloudFormation.$": "$.cloudFormation",
                                          "execution.$": "$$.Execution.Name"}, "Next": "Preflight"},
    "Preflight": task("Preflight", "$.preflight", "Route",
                      "Validate the input (ValidationError naming the field), read the account, check the OIDC provider and the IRSA role."),
    "Route": {"Type": "Choice", "Comment": "The validated action: plan, delete, or apply (default); a delete by name of a deployment nothing records ends at once.", "Choices": [
        {"Variable": "$.preflight.nothingRecorded", "BooleanEquals": True, "Next": "NothingToDelete"},
        {"Variable": "$.preflight.action", "StringEquals": "plan", "Next": "Plan"},
        {"Variable": "$.preflight.action", "StringEquals": "delete", "Next": "DeleteInit"}],
        "Default": "IrsaTrust"},
    "NothingToDelete": {"Type": "Pass", "Comment": "Nothing records the deployment named: the delete report says so, and nothing is deleted.",
                        "Parameters": {"note.$": "$.preflight.note"}, "ResultPath": "$.deleted", "Next": "Finish"},
    # plan
    "Plan": task("Plan", "$.plan", "Finish", "Every step without writing: what apply would change."),
    # apply: the critical path. Both workspaces are started (with what they need: the IRSA trust,
    # the write policy, the Grafana role) before either is waited for; the values are published
    # as soon as the data path is ready (AMP ACTIVE, remote write verified); only the Grafana
    # datasource waits for the Grafana workspace. One step at a time, so the record and the
    # execution state have one writer.
    "IrsaTrust": task("IrsaTrust", "$.irsaTrust", "AmpWorkspace",
                      "Make the IRSA role trust observability-* service accounts of the namespace.", APPLY_CATCH),
    "AmpWorkspace": task("AmpWorkspace", "$.ampWorkspace", "WritePolicy",
                         "Find the AMP workspace by exact alias (renaming the recorded one on an alias change), or start creating it.", APPLY_CATCH),
    "WritePolicy": task("WritePolicy", "$.writePolicy", "GrafanaRole",
                        "Converge the write policy (it needs the AMP workspace's ARN, not its being ACTIVE) and attach it to the IRSA role.", APPLY_CATCH),
    "GrafanaRole": task("GrafanaRole", "$.grafanaRole", "GrafanaWorkspace",
                        "Converge the Grafana role, its trust and its read policy.", APPLY_CATCH),
    "GrafanaWorkspace": task("GrafanaWorkspace", "$.grafanaWorkspace", "AmpActive?",
                             "Find the Grafana workspace by exact name, or start creating it (it becomes ACTIVE while the data path finishes).", APPLY_CATCH),
    "Verify": task("Verify", "$.verification", "Publish",
                   "Check the policies, the trust and a remote-write probe (the data path); the result goes to SSM and, through publish, to the output contract.", APPLY_CATCH),
    "Publish": task("Publish", "$.output", "GrafanaActive?",
                    "Write the SSM parameters and the Helm values (the cluster can ship telemetry from here on); returns the output contract.", APPLY_CATCH),
    "Datasource": task("Datasource", "$.datasource", "Finish",
                       "Upsert the SigV4 Prometheus datasource (a short-lived token, deleted after use), check its health, grant the admins.", APPLY_CATCH),
    # a failed apply step of a rolled-back run (preflight.rollbackOnFailure): the same delete
    # chain, with its own Catch so that the original error stays in $.error
    "RollBack?": {"Type": "Choice", "Comment": "Roll back a failed CloudFormation Create of a deployment that had no record before it; else answer.",
                  "Choices": [{"Variable": "$.preflight.rollbackOnFailure", "BooleanEquals": True, "Next": "Rollback"}],
                  "Default": "Finish"},
    "Rollback": {"Type": "Pass", "Comment": "The rollback is the delete of what this run recorded: every step runs its delete.",
                 "Result": "delete", "ResultPath": "$.input.action", "Next": "RollbackRetain?"},
    "RollbackRetain?": {"Type": "Choice", "Comment": "A retainMetrics the input states is obeyed; by default the AMP workspace is deleted only when this failed Create made it (it holds no data worth keeping); one it found (kept by an earlier delete, with its metrics) is kept.",
                        "Choices": [{"Variable": "$.input.retainMetrics", "IsPresent": True, "Next": "RollbackInit"},
                                    {"And": [{"Variable": "$.ampWorkspace.created", "IsPresent": True},
                                             {"Variable": "$.ampWorkspace.created", "BooleanEquals": True}],
                                     "Next": "RollbackNoRetain"}],
                        "Default": "RollbackInit"},
    "RollbackNoRetain": {"Type": "Pass", "Comment": "This failed Create made the AMP workspace: the rollback deletes it (retainMetrics false).",
                         "Result": False, "ResultPath": "$.input.retainMetrics", "Next": "RollbackInit"},
    # every path ends here: release the lease, answer CloudFormation if it started the run, then
    # succeed or fail
    "Finish": task("Finish", "$.finish", "Outcome",
                   "Release this run's lease; when CloudFormation started the run, PUT its one response: SUCCESS with Data, or FAILED with the step, error and cause.",
                   catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.finishError", "Next": "Outcome"}]),
    "Outcome": {"Type": "Choice", "Comment": "Fail with the step's error (in plain words when Finish wrote them), or end with the output of the action: plan, delete, or apply (default).",
                "Choices": [
        {"And": [{"Variable": "$.error", "IsPresent": True}, {"Variable": "$.finish.cause", "IsPresent": True}],
         "Next": "Failed"},
        {"Variable": "$.error", "IsPresent": True, "Next": "FailedUnfinished"},
        {"Variable": "$.finishError", "IsPresent": True, "Next": "FinishFailed"},
        {"Variable": "$.preflight.action", "StringEquals": "plan", "Next": "Planned"},
        {"Variable": "$.preflight.action", "StringEquals": "delete", "Next": "Deleted"}],
        "Default": "Done"},
    "Done": {"Type": "Pass", "Comment": "The execution output is the output contract.", "OutputPath": "$.output", "End": True},
    "Planned": {"Type": "Pass", "Comment": "The execution output is the plan.", "OutputPath": "$.plan", "End": True},
    "Deleted": {"Type": "Pass", "Comment": "The execution output is what was deleted and what was kept.",
                "OutputPath": "$.deleted", "End": True},
    "FinishFailed": {"Type": "Fail", "Comment": "The run's work succeeded but Finish did not (the lease then expires by itself; CloudFormation may not have its answer).",
                     "ErrorPath": "$.finishError.Error", "CausePath": "$.finishError.Cause"},
    "FailedUnfinished": {"Type": "Fail", "Comment": "A step failed and Finish failed too (so no plain text): the step's error as the Lambda reported it.",
                         "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"},
    "Failed": {"Type": "Fail", "Comment": "Error is the stable error name; Cause, in plain words, names the error, the step and why (Finish's text, CloudFormation's Reason).",
               "ErrorPath": "$.error.Error", "CausePath": "$.finish.cause"},
}
states.update(wait_loop("AmpActive?", "AmpWait", "AmpStatus", "$.ampWorkspace", "ACTIVE", "Verify", "AmpStatus",
                        "Look at the AMP workspace again; fails once the wait budget is spent.", APPLY_CATCH,
                        "the AMP workspace"))
states.update(wait_loop("GrafanaActive?", "GrafanaWait", "GrafanaStatus", "$.grafanaWorkspace", "ACTIVE", "Datasource",
                        "GrafanaStatus", "Look at the Grafana workspace again; fails once the wait budget is spent.", APPLY_CATCH,
                        "the Grafana workspace"))
states.update(delete_chain("Delete", CATCH, "this deployment"))
states.update(delete_chain("Rollback", ROLLBACK_CATCH, "this run"))
asl = {"Comment": "o11y-provisioner: plan, apply or delete the AMP, Managed Grafana and IAM setup of an EKS deployment (JSONPath).",
       "QueryLanguage": "JSONPath", "StartAt": "Init", "TimeoutSeconds": 3000, "States": states}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "provision.asl.json")
with open(out, "w") as f:
    f.write(json.dumps(asl, indent=2) + "\n")
