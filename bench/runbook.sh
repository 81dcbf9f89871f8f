#!/usr/bin/env bash
# The manual runbook (/work/shared/seed/000_b61918bc05b4e771.txt, "AWS with CloudWatch/X-Ray/
# Prometheus/Grafana") as a script: the same `aws` CLI commands in the same order, with the names
# and inputs of statemachine/examples/minimal.json's defaults, so that it creates the same
# resources as the workflow. It is the baseline of the benchmark (scripts/bench): every `aws` call
# starts a Python process, which is the real cost of the runbook, and is measured as is.
#
# Needs: the AWS CLI ($AWS, default .venv/bin/aws), jq, and AWS_ENDPOINT_URL, credentials and
# region in the environment (eval "$(scripts/devstack up)"), plus the seeded cluster, OIDC
# provider and IRSA role (target/debug/o11y-local seed-demo).
#
# Where the runbook leaves something to the operator, the script does the least an operator must:
#   - AWS_ACCOUNT_ID: `aws sts get-caller-identity` (the runbook assumes it is set).
#   - The IRSA trust patch ("a new condition for allowing service accounts prefixed by
#     observability- should be added"): `aws eks describe-cluster` for the issuer, `aws iam get-role`
#     for the current trust, one statement appended (like the workflow; editing the existing
#     StringEquals condition would AND the two subjects), `aws iam update-assume-role-policy`.
#   - The runbook passes `--policy-document $POLICY_JSON` unquoted, which the shell splits into
#     words (the CLI then fails with "Unknown options"): quoted here.
#   - The SSM parameters the workflow publishes (the runbook has the operator copy the values into
#     the chart instead): `aws ssm put-parameter`, one call per parameter, same names and values
#     (with cli_follow_urlparam off: CLI v1 would otherwise try to download the https:// values).
# The policy documents are the runbook's verbatim (the workflow scopes the CloudWatch Logs resource
# to the configured group on purpose: README "Deliberate difference from the runbook").
#
# BENCH_TIMINGS=FILE appends "<seconds> <aws args...>" for each CLI call (bash's EPOCHREALTIME,
# no extra process).
set -euo pipefail

AWS_BIN=${AWS:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/aws}
export AWS_PAGER=""
# AWS CLI v1 fetches any parameter value that starts with https:// (cli_follow_urlparam, default
# true), which breaks `put-parameter --value https://...`: switch that off (v2's default).
AWS_CONFIG_FILE=$(mktemp)
export AWS_CONFIG_FILE
trap 'rm -f "$AWS_CONFIG_FILE"' EXIT
printf '[default]\ncli_follow_urlparam = false\n' >"$AWS_CONFIG_FILE"

aws() {
  local t0=$EPOCHREALTIME rc=0
  "$AWS_BIN" "$@" || rc=$?
  if [ -n "${BENCH_TIMINGS:-}" ]; then
    local t1=$EPOCHREALTIME
    printf '%s %s %s\n' "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f", b-a}')" "$1" "$2" >>"$BENCH_TIMINGS"
  fi
  return $rc
}

# --- Inputs: statemachine/examples/minimal.json and the README's defaults -----------------------
DEPLOYMENT=dr-prod
CLUSTER_NAME=dr-eks
NAMESPACE=dr-core
IRSA_ROLE=dr-core-irsa
AMP_WORKSPACE_ALIAS=$DEPLOYMENT
POLICY_NAME=$DEPLOYMENT-observability-write
GRAFANA_ROLE_NAME=$DEPLOYMENT-grafana
READ_POLICY_NAME=$DEPLOYMENT-grafana-amp-read
GRAFANA_WORKSPACE_NAME=$DEPLOYMENT
LOG_GROUP_NAME=/$DEPLOYMENT/observability
LOG_STREAM_NAME=otel-collector
SSM_PREFIX=/o11y/$DEPLOYMENT

# "aws commands below assume that AWS_REGION and AWS_ACCOUNT_ID have been configured"
AWS_REGION=${AWS_REGION:-us-east-1}
AWS_ACCOUNT_ID=$(aws sts get-caller-identity --query Account --output text)

# --- Requirements: the IRSA trust for observability-* service accounts ---------------------------
OIDC_ISSUER=$(aws eks describe-cluster --name "$CLUSTER_NAME" --query cluster.identity.oidc.issuer --output text)
OIDC_HOST_PATH=${OIDC_ISSUER#https://}
OIDC_PROVIDER_ARN="arn:aws:iam::${AWS_ACCOUNT_ID}:oidc-provider/${OIDC_HOST_PATH}"
TRUST_JSON=$(aws iam get-role --role-name "$IRSA_ROLE" --query Role.AssumeRolePolicyDocument --output json)
OBSERVABILITY_STATEMENT=$(cat <<EOF
{
  "Sid": "AllowObservabilityServiceAccounts",
  "Effect": "Allow",
  "Principal": {"Federated": "${OIDC_PROVIDER_ARN}"},
  "Action": "sts:AssumeRoleWithWebIdentity",
  "Condition": {
    "StringLike": {"${OIDC_HOST_PATH}:sub": "system:serviceaccount:${NAMESPACE}:observability-*"},
    "StringEquals": {"${OIDC_HOST_PATH}:aud": "sts.amazonaws.com"}
  }
}
EOF
)
NEW_TRUST_JSON=$(jq -c --argjson st "$OBSERVABILITY_STATEMENT" '.Statement += [$st]' <<<"$TRUST_JSON")
aws iam update-assume-role-policy --role-name "$IRSA_ROLE" --policy-document "$NEW_TRUST_JSON"
IRSA_ROLE_ARN="arn:aws:iam::${AWS_ACCOUNT_ID}:role/${IRSA_ROLE}"

# --- Prometheus workspace -----------------------------------------------------------------------
aws amp create-workspace --alias $AMP_WORKSPACE_ALIAS >/dev/null
AMP_WORKSPACE_ARN=$(aws amp list-workspaces \
    --query "workspaces[?alias=='${AMP_WORKSPACE_ALIAS}'].arn" \
    --output text)

# --- Write policy for IRSA service account ------------------------------------------------------
POLICY_JSON=$(cat <<-EOF
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "AllowCloudWatchLogs",
      "Effect": "Allow",
      "Action": [
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "logs:DescribeLogStreams"
      ],
      "Resource": "arn:aws:logs:${AWS_REGION}:${AWS_ACCOUNT_ID}:log-group:*:log-stream:*"
    },
    {
      "Sid": "AllowXRayTracing",
      "Effect": "Allow",
      "Action": [
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords"
      ],
      "Resource": "*"
    },
    {
      "Sid": "AllowPrometheusRemoteWrite",
      "Effect": "Allow",
      "Action": [
        "aps:RemoteWrite"
      ],
      "Resource": "${AMP_WORKSPACE_ARN}"
    }
  ]
}
EOF
)

aws iam create-policy \
    --policy-name $POLICY_NAME \
    --policy-document "$POLICY_JSON" \
    --description "Policy for writing to CloudWatch, X-Ray, and Prometheus." >/dev/null

POLICY_ARN=$(aws iam list-policies \
    --scope Local \
    --query "Policies[?PolicyName=='${POLICY_NAME}'].Arn" \
    --output text)

aws iam attach-role-policy --role-name "${IRSA_ROLE}" --policy-arn "${POLICY_ARN}"

# --- Grafana instance, role and read policy for Prometheus --------------------------------------
GRAFANA_TRUST_POLICY_JSON=$(cat <<-EOF
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": "sts:AssumeRole",
      "Principal": {
        "Service": "grafana.amazonaws.com"
      },
      "Condition": {
        "StringEquals": {
          "aws:SourceAccount": "${AWS_ACCOUNT_ID}"
        },
        "StringLike": {
          "aws:SourceArn": "arn:aws:grafana:${AWS_REGION}:${AWS_ACCOUNT_ID}:/workspaces/*"
        }
      }
    }
  ]
}
EOF
)

aws iam create-role \
    --role-name "${GRAFANA_ROLE_NAME}" \
    --assume-role-policy-document "${GRAFANA_TRUST_POLICY_JSON}" \
    --description "IAM role for Amazon Managed Grafana to read metrics from Amazon Managed Prometheus." >/dev/null

GRAFANA_ROLE_ARN=$(
    aws iam get-role \
    --role-name "${GRAFANA_ROLE_NAME}" \
    --query 'Role.Arn' \
    --output text
)

READ_POLICY_JSON=$(cat <<EOF
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": [
        "aps:ListWorkspaces",
        "aps:DescribeWorkspace",
        "aps:QueryMetrics",
        "aps:GetLabels",
        "aps:GetSeries",
        "aps:GetMetricMetadata"
      ],
      "Resource": [
        "${AMP_WORKSPACE_ARN}"
      ]
    }
  ]
}
EOF
)

aws iam create-policy \
    --policy-name "${READ_POLICY_NAME}" \
    --policy-document "${READ_POLICY_JSON}" \
    --description "IAM policy for reading Prometheus workspace" >/dev/null

READ_POLICY_ARN=$(
    aws iam list-policies \
    --scope Local \
    --query "Policies[?PolicyName=='${READ_POLICY_NAME}'].Arn" \
    --output text
)

aws iam attach-role-policy --role-name "${GRAFANA_ROLE_NAME}" --policy-arn "${READ_POLICY_ARN}"

aws grafana create-workspace \
    --account-access-type "CURRENT_ACCOUNT" \
    --authentication-providers "AWS_SSO" \
    --grafana-version "10.4" \
    --workspace-name "${GRAFANA_WORKSPACE_NAME}" \
    --permission-type "CUSTOMER_MANAGED" \
    --workspace-role-arn "${GRAFANA_ROLE_ARN}" >/dev/null

GRAFANA_WORKSPACE_ID=$(
    aws grafana list-workspaces \
    --query "workspaces[?name=='${GRAFANA_WORKSPACE_NAME}'].id | [0]" \
    --output text
)

GRAFANA_WORKSPACE_URL=$(
    aws grafana describe-workspace \
    --workspace-id "${GRAFANA_WORKSPACE_ID}" \
    --query "workspace.endpoint" \
    --output text
)
GRAFANA_URL="https://${GRAFANA_WORKSPACE_URL}"

# --- Retrieving configuration values: Prometheus write endpoint ---------------------------------
PROMETHEUS_REMOTE_WRITE_URL=$(aws amp describe-workspace \
    --workspace-id "${AMP_WORKSPACE_ARN##*/}" \
    --query "join('', [workspace.prometheusEndpoint, 'api/v1/remote_write'])" \
    --output text)
PROMETHEUS_ENDPOINT=${PROMETHEUS_REMOTE_WRITE_URL%api/v1/remote_write}

# --- Full chart configuration, and every value, as the workflow's SSM parameters ----------------
HELM_VALUES=$(cat <<EOF
global:
  observability:
    auth:
      aws:
        enabled: true
        roleArn: ${IRSA_ROLE_ARN}
        region: ${AWS_REGION}

    exporters:
      awscloudwatchlogs:
        region: ${AWS_REGION}
        log_group_name: ${LOG_GROUP_NAME}
        log_stream_name: ${LOG_STREAM_NAME}
      prometheusremotewrite:
        endpoint: ${PROMETHEUS_REMOTE_WRITE_URL}
        auth:
          authenticator: sigv4auth
      awsxray:
        region: ${AWS_REGION}

    signals:
      logs:
        exporters: [awscloudwatchlogs]
      metrics:
        exporters: [prometheusremotewrite]
      traces:
        exporters: [awsxray]
EOF
)

put() { aws ssm put-parameter --name "$SSM_PREFIX/$1" --type String --value "$2" >/dev/null; }
put irsa-role-arn "$IRSA_ROLE_ARN"
put amp-workspace-id "${AMP_WORKSPACE_ARN##*/}"
put amp-workspace-arn "$AMP_WORKSPACE_ARN"
put prometheus-endpoint "$PROMETHEUS_ENDPOINT"
put remote-write-url "$PROMETHEUS_REMOTE_WRITE_URL"
put write-policy-arn "$POLICY_ARN"
put grafana-role-arn "$GRAFANA_ROLE_ARN"
put read-policy-arn "$READ_POLICY_ARN"
put grafana-workspace-id "$GRAFANA_WORKSPACE_ID"
put grafana-url "$GRAFANA_URL"
put helm-values "$HELM_VALUES"$'\n'

echo "$GRAFANA_URL"
