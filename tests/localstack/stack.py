"""The local stack as the Python harnesses see it (bench/bench.py, chaos/chaos.py): moto, the
Managed Grafana emulator and the router that serves the real function binaries (router/README.md).

`Stack` holds the URLs (from the devstack's environment or from its `devstack.json`), the boto3
clients of the harness, the router's control API (request log, faults, function statistics), resets,
the state machine deployed from the real ASL, and executions started and waited for. The harness's
own AWS calls go straight to moto and to the emulator, so that the router's request log and its
fault injection only see what the product does; Lambda invokes go through the router, which serves
the functions. What each logged request is for (its `purpose`) is the router's to say.

Python 3 standard library plus boto3 (the repository's .venv).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import boto3
from botocore.config import Config

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
STATE_MACHINE_NAME = "o11y-provisioner"
STATE_MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{STATE_MACHINE_NAME}"
STATES_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/o11y-provisioner-states"
# The ASL's placeholders for the functions' ARNs: `${AmpWorkspaceFunctionArn}` names amp-workspace.
FUNCTION_ARN_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9]+)FunctionArn\}")
ENV_VARS = ("AWS_ENDPOINT_URL", "O11Y_MOTO_URL", "O11Y_GRAFANA_EMULATOR_URL")
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def kebab(pascal: str) -> str:
    """A function's name from its ASL placeholder's stem: `AmpWorkspace` -> `amp-workspace`."""
    return re.sub(r"(?<!^)([A-Z])", r"-\1", pascal).lower()


def function_arn(name: str) -> str:
    """The ARN of the function `name` on the local stack."""
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"


def definition(asl: Path) -> str:
    """The state machine definition of the ASL file `asl`, its `${XFunctionArn}` placeholders
    replaced by the functions' ARNs."""
    return FUNCTION_ARN_PLACEHOLDER.sub(lambda m: function_arn(kebab(m.group(1))), asl.read_text())


def execution_arn(name: str, sm_arn: str = STATE_MACHINE_ARN) -> str:
    """The ARN of execution `name` of the state machine `sm_arn`."""
    return f"{sm_arn.replace(':stateMachine:', ':execution:')}:{name}"


def http(method: str, url: str, body: object | None = None, timeout: float = 30.0) -> tuple[int, object]:
    """One JSON request (`body`: JSON-encoded, or bytes as they are); (status, the body parsed as
    JSON, or its text when the status is an HTTP error). Connection failures raise OSError."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            text = r.read()
            return r.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def call(method: str, url: str, body: object | None = None, timeout: float = 30.0) -> object:
    """http(), and the parsed body; an HTTP error status raises RuntimeError."""
    status, out = http(method, url, body, timeout)
    if status >= 300:
        raise RuntimeError(f"{method} {url}: {status} {out}")
    return out


def env_urls() -> tuple[str, str, str]:
    """(router, moto, emulator) URLs from the devstack's environment (`eval "$(scripts/devstack up)"`):
    AWS_ENDPOINT_URL, O11Y_MOTO_URL, O11Y_GRAFANA_EMULATOR_URL; exits naming any that is missing."""
    missing = [k for k in ENV_VARS if not os.environ.get(k)]
    if missing:
        raise SystemExit(f"{', '.join(missing)} not set: run under scripts/bench (or eval \"$(scripts/devstack up)\")")
    router, moto, grafana = (os.environ[k] for k in ENV_VARS)
    return router, moto, grafana


def _client(service: str, url_attr: str, config_attr: str = "config") -> cached_property:
    """A Stack attribute: the boto3 client of `service` at the URL the attribute `url_attr` holds
    (with the config `config_attr` holds), made on first use."""
    return cached_property(lambda self: self.client(service, getattr(self, url_attr), getattr(self, config_attr)))


@dataclass
class Execution:
    """How an execution ended (`STILL_RUNNING` when waiting for it timed out)."""

    name: str
    arn: str
    status: str
    error: str | None = None
    cause: str | None = None
    output: object = None
    polls: int = 0  # DescribeExecution calls made while waiting
    engine_s: float | None = None  # stopDate - startDate, as Step Functions reports them

    def __repr__(self) -> str:
        return f"{self.name}: {self.status} {self.error or ''} {(self.cause or '')[:300]}"


class Stack:
    """A running local stack: the router (`router_url`, also the functions' AWS endpoint), moto
    (`moto_url`) and the Grafana emulator (`grafana_url`).

    `config` is the botocore config of the harness's clients to moto and the emulator,
    `invoke_config` that of its Lambda client (through the router). `state_file` is the devstack's
    state, when the stack may be taken away by another session's `devstack up`/`down` (check())."""

    def __init__(self, router_url: str, moto_url: str, grafana_url: str, *, config: Config | None = None,
                 invoke_config: Config | None = None, state_file: Path | None = None):
        self.router_url = router_url.rstrip("/")
        self.moto_url = moto_url.rstrip("/")
        self.grafana_url = grafana_url.rstrip("/")
        self.config = config
        self.invoke_config = invoke_config or config
        self.state_file = state_file
        self.state = state_file.read_text() if state_file and state_file.exists() else None
        self.last_seq = 0
        self.machines_found: list[int] = []  # state machines that existed at each deploy()

    @classmethod
    def from_env(cls, **kw) -> "Stack":
        """The stack named by the devstack's environment (env_urls())."""
        return cls(*env_urls(), **kw)

    @classmethod
    def from_state_file(cls, state_file: Path, **kw) -> "Stack":
        """The stack described by a devstack's `devstack.json` (`endpoint`, `motoUrl`, `grafanaUrl`)."""
        st = json.loads(state_file.read_text())
        return cls(st["endpoint"], st["motoUrl"], st["grafanaUrl"], state_file=state_file, **kw)

    @property
    def logs_dir(self) -> Path | None:
        """The devstack's process logs (beside its state file)."""
        return self.state_file.parent / "logs" if self.state_file else None

    # --- clients ---------------------------------------------------------------------------
    def client(self, service: str, endpoint: str, config: Config | None = None):
        """A boto3 client of `service` at `endpoint` (the stack's region and test credentials)."""
        return boto3.client(service, endpoint_url=endpoint, region_name=REGION, config=config or self.config,
                            **CREDENTIALS)

    # The harness's clients, each made on first use: AWS services at moto (Step Functions there
    # too: the executions' own calls stay out of the router's log), Managed Grafana's control plane
    # at the emulator, and Lambda through the router, which serves the functions (invoke_config).
    sfn = _client("stepfunctions", "moto_url")
    ssm = _client("ssm", "moto_url")
    iam = _client("iam", "moto_url")
    amp = _client("amp", "moto_url")
    eks = _client("eks", "moto_url")
    s3 = _client("s3", "moto_url")
    grafana = _client("grafana", "grafana_url")
    lam = _client("lambda", "router_url", "invoke_config")

    # --- the router's control API (router/README.md "Router endpoints") --------------------
    def router(self, method: str, path: str, body: object | None = None, timeout: float = 60.0) -> object:
        """A request to the router's `/_router/...` endpoints; an error status raises RuntimeError."""
        return call(method, self.router_url + path, body, timeout)

    def requests(self, since: int = 0) -> list[dict]:
        """The router's request log after `since` (a `seq`), in arrival order."""
        entries = sorted(self.router("GET", f"/_router/requests?since={since}") or [], key=lambda e: e["seq"])
        if entries:
            self.last_seq = max(self.last_seq, entries[-1]["seq"])
        return entries

    def mark(self) -> int:
        """The current end of the router's request log (a `seq` for requests())."""
        self.requests(self.last_seq)
        return self.last_seq

    def functions(self) -> dict:
        """The router's per-function statistics (processes, cold starts, peak RSS, errors...)."""
        return self.router("GET", "/_router/functions") or {}

    def reset_functions(self) -> None:
        """Stops every warm function process and clears their statistics (the next invokes are cold)."""
        self.router("POST", "/_router/functions/reset", {})

    def set_faults(self, cfg: dict) -> None:
        """Sets the router's fault injection (router/README.md "Fault injection")."""
        self.router("POST", "/_router/faults", cfg)

    def clear_faults(self) -> None:
        """Switches the router's fault injection off."""
        self.router("DELETE", "/_router/faults")

    # --- moto and the emulator -------------------------------------------------------------
    def emulator(self, method: str, path: str, body: object | None = None) -> object:
        """A request to the Grafana emulator's `/_emulator/...` control endpoints."""
        return call(method, self.grafana_url + path, body)

    def check(self) -> None:
        """Fails clearly (RuntimeError) when the stack is gone or, with a state file, was replaced
        by another session's (`devstack up`/`down` share its state file)."""
        if self.state_file is not None:
            now = self.state_file.read_text() if self.state_file.exists() else None
            if self.state is not None and now != self.state:
                raise RuntimeError(f"the devstack was stopped or replaced by another session (`devstack up`/`down` "
                                   f"share {self.state_file}): run again when no one else uses it")
        try:
            self.router("GET", "/_router/health", timeout=5)
        except (OSError, RuntimeError) as e:
            raise RuntimeError(f"the router at {self.router_url} does not answer ({e}): the devstack is gone")

    def reset(self) -> None:
        """Empties moto and the emulator (the emulator's command-line configuration restored)."""
        self.check()
        call("POST", f"{self.moto_url}/moto-api/reset", {}, timeout=60)
        # The execution switch survives a reset (aws-facts.md); setting it again before any
        # state machine exists is harmless and guards against a moto that does reset it.
        call("POST", f"{self.moto_url}/moto-api/config", {"stepfunctions": {"execute_state_machine": True}})
        self.emulator("POST", "/_emulator/reset", {})
        self.router("POST", "/_router/authz/roles")

    # --- the state machine -----------------------------------------------------------------
    def deploy(self, asl: Path) -> str:
        """Creates the state machine from the ASL file `asl`, or updates it; returns its ARN."""
        text = definition(asl)
        existing = self.sfn.list_state_machines()["stateMachines"]
        self.machines_found.append(len(existing))
        for sm in existing:
            if sm["name"] == STATE_MACHINE_NAME:
                self.sfn.update_state_machine(stateMachineArn=sm["stateMachineArn"], definition=text)
                return sm["stateMachineArn"]
        return self.sfn.create_state_machine(name=STATE_MACHINE_NAME, definition=text,
                                             roleArn=STATES_ROLE_ARN)["stateMachineArn"]

    def start_execution(self, name: str, payload: object, sm_arn: str = STATE_MACHINE_ARN) -> str:
        """Starts execution `name` with `payload` (JSON, or a string as it is); its ARN (also when
        one of that name exists already)."""
        body = payload if isinstance(payload, str) else json.dumps(payload)
        try:
            return self.sfn.start_execution(stateMachineArn=sm_arn, name=name, input=body)["executionArn"]
        except self.sfn.exceptions.ExecutionAlreadyExists:
            return execution_arn(name, sm_arn)

    def wait_execution(self, arn: str, timeout: float = 900, poll_interval: float = 0.4) -> Execution:
        """Polls DescribeExecution every `poll_interval` s until the execution ends, or `timeout` s."""
        deadline = time.time() + timeout
        name = arn.rsplit(":", 1)[-1]
        polls = 0
        while True:
            d = self.sfn.describe_execution(executionArn=arn)
            polls += 1
            if d["status"] != "RUNNING":
                out = None
                if d.get("output"):
                    try:
                        out = json.loads(d["output"])
                    except ValueError:
                        out = d["output"]
                engine = None
                if d.get("startDate") and d.get("stopDate"):
                    engine = (d["stopDate"] - d["startDate"]).total_seconds()
                return Execution(name, arn, d["status"], d.get("error"), d.get("cause"), out, polls, engine)
            if time.time() > deadline:
                return Execution(name, arn, "STILL_RUNNING", "Timeout", f"still running after {timeout:.0f}s",
                                 polls=polls)
            time.sleep(poll_interval)

    def run_execution(self, name: str, payload: object, timeout: float = 900) -> Execution:
        """Starts execution `name` of the local state machine and waits for its end."""
        return self.wait_execution(self.start_execution(name, payload), timeout)

    def history(self, arn: str) -> list[dict]:
        """Every event of the execution `arn` (GetExecutionHistory, all pages)."""
        events, kw = [], {"executionArn": arn, "maxResults": 1000}
        while True:
            page = self.sfn.get_execution_history(**kw)
            events.extend(page["events"])
            if not page.get("nextToken"):
                return events
            kw["nextToken"] = page["nextToken"]
